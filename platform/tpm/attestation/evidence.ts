// trustee `tpm` evidence (docs/spec/kbs-protocol.md §4.4): quote over SHA-256 PCR0-23 with qualifyingData =
// first 32 bytes of the runtime digest, PCRs read AFTER the quote, then
//   {"ak_public": b64(DER SPKI), "tpm_quote": {"signature": b64(TPMT_SIGNATURE),
//    "message": b64(TPMS_ATTEST), "pcrs": [24 × lowercase hex]}}
import { createHash } from "node:crypto";
import { b64, bytesEqual, concat, fitTo, hex } from "../../util/bytes.ts";
import { CvmError } from "../../util/errors.ts";
import { TPM_ALG } from "../constants.ts";
import type { Tpm } from "../client.ts";
import { getActiveBanks, pcrReadBank, quote } from "../operations.ts";
import { withAttestationKey } from "./ak.ts";
import { publicToSpkiDer } from "./keys.ts";

export interface TpmEvidence {
  ak_public: string;
  tpm_quote: { signature: string; message: string; pcrs: string[] };
}

export const QUOTE_PCRS = Array.from({ length: 24 }, (_, i) => i);
/** A PCR extended between the quote and the PCR read makes the evidence inconsistent: re-quote. */
const MAX_QUOTE_ATTEMPTS = 3;

export interface TpmEvidenceResult {
  evidence: TpmEvidence;
  akOrigin: "persistent" | "derived";
  timings: Record<string, number>;
}

/**
 * The digest may still be pending: the AK is loaded first (the slow part on a TPM), so callers can
 * start this before the KBS challenge arrives and hand the digest in when it does.
 */
export async function collectTpmEvidence(
  tpm: Tpm,
  runtimeDigest: Uint8Array | Promise<Uint8Array>,
  akHandle: number,
): Promise<TpmEvidenceResult> {
  const timings: Record<string, number> = {};
  const banks = await getActiveBanks(tpm);
  if (!banks.includes(TPM_ALG.SHA256))
    throw new CvmError(
      "platform",
      `${tpm.description} has no active SHA-256 PCR bank (trustee's tpm verifier needs it)`,
      {
        hint: "activate the sha256 bank (tpm2_pcrallocate sha256:all) and reboot",
      },
    );
  return withAttestationKey(tpm, akHandle, async (ak) => {
    timings[ak.origin === "derived" ? "ak-create-primary" : "ak-read-public"] = round(ak.loadMs);
    const qualifyingData = fitTo(await runtimeDigest, 32);
    const akPublic = publicToSpkiDer(ak.publicArea);
    for (let attempt = 1; attempt <= MAX_QUOTE_ATTEMPTS; attempt++) {
      let t = performance.now();
      const q = await quote(tpm, {
        signHandle: ak.handle,
        qualifyingData,
        scheme: { scheme: TPM_ALG.RSASSA, hashAlg: TPM_ALG.SHA256 },
        selection: [{ hash: TPM_ALG.SHA256, pcrs: QUOTE_PCRS }],
      });
      timings.quote = round(performance.now() - t);
      t = performance.now();
      const pcrs = await pcrReadBank(tpm, TPM_ALG.SHA256, QUOTE_PCRS);
      timings["pcr-read"] = round(performance.now() - t);
      if (!bytesEqual(q.attest.extraData, qualifyingData))
        throw new CvmError("evidence", "TPM quote extraData differs from the qualifyingData sent");
      const sel = q.attest.pcrSelect;
      if (sel.length !== 1 || sel[0]!.hash !== TPM_ALG.SHA256 || sel[0]!.pcrs.join(",") !== QUOTE_PCRS.join(","))
        throw new CvmError("evidence", "TPM quoted a PCR selection other than the sha256:0-23 requested");
      if (q.signature.sigAlg !== TPM_ALG.RSASSA || q.signature.hashAlg !== TPM_ALG.SHA256)
        throw new CvmError("evidence", "TPM signed the quote with a scheme other than RSASSA-SHA256");
      const digest = new Uint8Array(
        createHash("sha256")
          .update(concat(...pcrs))
          .digest(),
      );
      if (bytesEqual(digest, q.attest.pcrDigest)) {
        return {
          evidence: {
            ak_public: b64(akPublic),
            tpm_quote: { signature: b64(q.signatureBytes), message: b64(q.message), pcrs: pcrs.map(hex) },
          },
          akOrigin: ak.origin,
          timings,
        };
      }
      tpm.log.debug("PCRs changed between quote and PCR read; quoting again", { attempt });
    }
    throw new CvmError(
      "evidence",
      `PCRs kept changing between TPM2_Quote and TPM2_PCR_Read (${MAX_QUOTE_ATTEMPTS} attempts)`,
    );
  });
}

function round(ms: number): number {
  return Math.round(ms * 100) / 100;
}
