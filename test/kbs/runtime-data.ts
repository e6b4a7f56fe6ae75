// The runtime data trustee binds into the primary evidence (docs/spec/kbs-protocol.md §2.1):
// JCS({"tee-pubkey", "nonce", "additional-evidence"}) hashed with SHA-384 (SHA-512 for `se`).
import { sha384, sha512 } from "@noble/hashes/sha2.js";
import { utf8 } from "../../platform/util/bytes.ts";
import { canonicalJson } from "./jcs.ts";
import type { TeePubKey } from "./messages.ts";

export interface PrimaryRuntimeData {
  "tee-pubkey": TeePubKey;
  nonce: string;
  "additional-evidence": string;
}

export function primaryRuntimeData(
  teePubkey: TeePubKey,
  nonce: string,
  additionalEvidence: string,
): PrimaryRuntimeData {
  return { "tee-pubkey": teePubkey, nonce, "additional-evidence": additionalEvidence };
}

/** The digest the verifier compares with the evidence's report data (48 bytes except for `se`). */
export function runtimeDigest(tee: string, data: object): Uint8Array {
  const canonical = utf8(canonicalJson(data));
  return tee === "se" ? sha512(canonical) : sha384(canonical);
}
