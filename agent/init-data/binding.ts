// Nothing from init-data is used unbound: before the KBS sees the evidence, the agent makes sure
// the platform carries the init-data digest where trustee will look for it
// (docs/spec/kbs-protocol.md §2.3), and refuses in the guest when it does not:
//   tpm, az-snp-vtpm, az-tdx-vtpm  PCR 8 (SHA-256 bank) == SHA-256(0^32 ‖ digest); we extend it
//                                  once, before the quote (idempotent for a second run in a boot)
//   snp                            report HOST_DATA == digest, right-padded/truncated to 32 bytes
//   tdx                            quote MRCONFIGID == digest, right-padded/truncated to 48 bytes
// HOST_DATA and MRCONFIGID are set by whoever launched the VM, so a mismatch means the init-data we
// found is not the one this VM was launched with: the KBS must never see that evidence.
import { sha256 } from "@noble/hashes/sha2.js";
import { parseSnpEvidenceJson } from "../../platform/snp/json.ts";
import { parseTdxQuote } from "../../platform/tdx/quote.ts";
import { TPM_ALG } from "../../platform/tpm/constants.ts";
import { withTpm } from "../../platform/tpm/client.ts";
import { pcrExtend, pcrReadBank } from "../../platform/tpm/operations.ts";
import type { PlatformEnv, TeeName } from "../../platform/types.ts";
import { bytesEqual, concat, fitTo, fromB64, hex, isAllZero } from "../../platform/util/bytes.ts";
import { CvmError, errorMessage } from "../../platform/util/errors.ts";
import { describeInitData, type InitDataDocument } from "./document.ts";

export const INIT_DATA_PCR = 8;

/** What PCR 8 holds after one extend of `digest` from reset (trustee's check). */
export function expectedPcr8(digest: Uint8Array): Uint8Array {
  return sha256(concat(new Uint8Array(32), digest));
}

const VTPM_TEES: readonly TeeName[] = ["tpm", "az-snp-vtpm", "az-tdx-vtpm", "azsnpvtpm", "aztdxvtpm"];

export function bindsThroughPcr8(tee: TeeName): boolean {
  return VTPM_TEES.includes(tee);
}

/** The PCR-8 decision for a current value: nothing to do, extend once, or refuse. */
export function pcr8Action(current: Uint8Array, digest: Uint8Array): "bound" | "extend" {
  if (bytesEqual(current, expectedPcr8(digest))) return "bound";
  if (isAllZero(current)) return "extend";
  throw new CvmError(
    "platform",
    `PCR 8 already holds ${hex(current)}, not the init-data value ${hex(expectedPcr8(digest))}: something else ` +
      `measured into it (GRUB does), or another init-data was bound earlier in this boot; refusing before contacting the KBS`,
    {
      hint: "init-data with vTPM evidence needs a boot chain that leaves PCR 8 alone (systemd-boot / a UKI); see docs/SECURITY.md",
    },
  );
}

/** Extend PCR 8 with the init-data digest unless it already carries it (tpm-family evidence). */
export async function bindInitDataToPcr8(doc: InitDataDocument, env: PlatformEnv): Promise<"bound" | "extended"> {
  if (doc.algorithm !== "sha256")
    throw new CvmError(
      "config",
      `init-data from ${doc.origin} uses ${doc.algorithm}, but vTPM evidence needs sha256 (trustee's PCR 8 check takes a 32-byte digest)`,
      { hint: 'set algorithm = "sha256" in the init-data TOML' },
    );
  return withTpm(
    env.tpm.spec,
    env.deadline,
    env.log,
    async (tpm) => {
      const [current] = await pcrReadBank(tpm, TPM_ALG.SHA256, [INIT_DATA_PCR]);
      if (pcr8Action(current!, doc.digest) === "bound") return "bound";
      await pcrExtend(tpm, INIT_DATA_PCR, [{ hashAlg: TPM_ALG.SHA256, digest: doc.digest }]);
      // Read back: a TPM that ignores the extend must not let us attest as bound.
      const [after] = await pcrReadBank(tpm, TPM_ALG.SHA256, [INIT_DATA_PCR]);
      if (!bytesEqual(after!, expectedPcr8(doc.digest)))
        throw new CvmError(
          "platform",
          `PCR 8 reads ${hex(after!)} after extending it with the init-data digest (expected ${hex(expectedPcr8(doc.digest))}): the TPM misbehaves`,
        );
      return "extended";
    },
    { root: env.paths.root },
  );
}

function evidenceField(primary: unknown, key: string): unknown {
  return typeof primary === "object" && primary !== null ? (primary as Record<string, unknown>)[key] : undefined;
}

/**
 * The launch-time value the platform reports for snp (HOST_DATA) and tdx (MRCONFIGID), taken from
 * the evidence we are about to send; undefined for TEEs bound through PCR 8.
 */
export function launchBoundValue(tee: TeeName, primary: unknown): { field: string; value: Uint8Array } | undefined {
  try {
    if (tee === "snp") return { field: "HOST_DATA", value: parseSnpEvidenceJson(primary).report.host_data };
    if (tee === "tdx") {
      const quote = evidenceField(primary, "quote");
      if (typeof quote !== "string") throw new Error("evidence has no quote");
      return { field: "MRCONFIGID", value: parseTdxQuote(fromB64(quote, "tdx quote")).body.mrConfigId };
    }
  } catch (e) {
    throw new CvmError(
      "evidence",
      `cannot read the init-data binding from our own ${tee} evidence: ${errorMessage(e)}`,
    );
  }
  return undefined;
}

/** Refuse evidence whose HOST_DATA / MRCONFIGID does not carry the init-data digest. */
export function checkLaunchBinding(tee: TeeName, primary: unknown, doc: InitDataDocument): void {
  const bound = launchBoundValue(tee, primary);
  if (!bound) return;
  const want = fitTo(doc.digest, bound.value.length);
  if (!bytesEqual(bound.value, want))
    throw new CvmError(
      "evidence",
      `${bound.field} is ${hex(bound.value)}, but the init-data from ${doc.origin} (${describeInitData(doc)}) needs ` +
        `${hex(want)}: this VM was not launched with this init-data; refusing before sending evidence to the KBS`,
      { hint: `launch the VM with ${bound.field} set to the init-data digest, or remove the init-data` },
    );
}
