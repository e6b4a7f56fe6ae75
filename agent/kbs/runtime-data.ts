// Runtime data: what binds the KBS challenge and our ephemeral key into the hardware evidence
// (docs/spec/kbs-protocol.md §2). The primary TEE's digest is HASH(JCS({"additional-evidence","nonce",
// "tee-pubkey"})), with "additional-evidence":"" even when there are no devices; trustee
// recomputes exactly this on the server and compares it with the report/quote.
import { sha384, sha512 } from "@noble/hashes/sha2.js";
import { fitTo, utf8 } from "../../platform/util/bytes.ts";
import { CvmError } from "../../platform/util/errors.ts";
import type { TeeName } from "../../platform/types.ts";
import { canonicalize } from "./jcs.ts";
import type { TeePubKey } from "./tee-key.ts";

export type RuntimeHashAlgorithm = "sha384" | "sha512";

/** The "runtime-data" member of the /attest body. */
export interface RuntimeData {
  nonce: string;
  "tee-pubkey": TeePubKey;
}

/**
 * The hash the challenge selects: extra-params."selected-hash-algorithm" (case-insensitive, as the
 * reference client reads it), else SHA-384. Only IBM SE ever selects one (sha512); anything we
 * cannot compute is refused rather than silently replaced, since the server would then disagree.
 */
export function selectHashAlgorithm(challengeExtraParams: unknown): RuntimeHashAlgorithm {
  if (challengeExtraParams === null || typeof challengeExtraParams !== "object" || Array.isArray(challengeExtraParams))
    return "sha384";
  const selected = (challengeExtraParams as Record<string, unknown>)["selected-hash-algorithm"];
  if (selected === undefined) return "sha384";
  const name = typeof selected === "string" ? selected.toLowerCase() : "";
  if (name === "sha384" || name === "sha512") return name;
  throw new CvmError(
    "kbs-protocol",
    `KBS challenge selected hash algorithm ${JSON.stringify(selected)}, which this client does not support`,
    {
      hint: "only sha384 (all TEEs) and sha512 (IBM SE) are defined for runtime data",
    },
  );
}

/** JCS text hashed for the primary evidence. */
export function primaryRuntimeDataJcs(runtime: RuntimeData, additionalEvidence = ""): string {
  return canonicalize({
    "additional-evidence": additionalEvidence,
    nonce: runtime.nonce,
    "tee-pubkey": runtime["tee-pubkey"],
  });
}

/** JCS text hashed for additional devices ({nonce, tee-pubkey} only). */
export function deviceRuntimeDataJcs(runtime: RuntimeData): string {
  return canonicalize({ nonce: runtime.nonce, "tee-pubkey": runtime["tee-pubkey"] });
}

export function hashRuntimeData(jcs: string, alg: RuntimeHashAlgorithm): Uint8Array {
  return (alg === "sha512" ? sha512 : sha384)(utf8(jcs));
}

/** Digest the primary TEE's evidence must carry (48 bytes for SHA-384). */
export function runtimeDigest(
  runtime: RuntimeData,
  alg: RuntimeHashAlgorithm = "sha384",
  additionalEvidence = "",
): Uint8Array {
  return hashRuntimeData(primaryRuntimeDataJcs(runtime, additionalEvidence), alg);
}

/**
 * How each TEE carries the digest (docs/spec/kbs-protocol.md §2.2, trustee's regularize_data):
 * snp/tdx: digest right-padded with zeros to the 64-byte REPORTDATA; tpm: qualifyingData is the
 * first 32 bytes (truncated); Azure vTPM: the raw digest (NV user-data and quote nonce);
 * sample: the raw digest (the sample source base64-encodes it).
 */
export function reportDataFor(tee: TeeName, digest: Uint8Array): Uint8Array {
  switch (tee) {
    case "snp":
    case "tdx":
      if (digest.length > 64)
        throw new CvmError("internal", `a ${digest.length}-byte digest does not fit ${tee} REPORTDATA (64)`);
      return fitTo(digest, 64);
    case "tpm":
      if (digest.length < 32)
        throw new CvmError("internal", `a ${digest.length}-byte digest is shorter than TPM qualifyingData (32)`);
      return digest.slice(0, 32);
    case "az-snp-vtpm":
    case "az-tdx-vtpm":
    case "azsnpvtpm":
    case "aztdxvtpm":
    case "sample":
      return digest.slice();
  }
}
