// TPM_ALG_ID hash algorithms that appear in TCG event logs and CCEL, with their digest sizes and,
// where this build can compute it, the hash function used to replay a bank.
import { sha1 } from "@noble/hashes/legacy.js";
import { sha256, sha384, sha512 } from "@noble/hashes/sha2.js";

export const TPM_ALG_SHA1 = 0x0004;
export const TPM_ALG_SHA256 = 0x000b;
export const TPM_ALG_SHA384 = 0x000c;
export const TPM_ALG_SHA512 = 0x000d;
export const TPM_ALG_SM3_256 = 0x0012;

interface KnownAlgorithm {
  name: string;
  size: number;
  /** Absent when no implementation is bundled (SM3): such banks are parsed but not replayed. */
  hash?: (data: Uint8Array) => Uint8Array;
}

const KNOWN: ReadonlyMap<number, KnownAlgorithm> = new Map([
  [TPM_ALG_SHA1, { name: "sha1", size: 20, hash: sha1 }],
  [TPM_ALG_SHA256, { name: "sha256", size: 32, hash: sha256 }],
  [TPM_ALG_SHA384, { name: "sha384", size: 48, hash: sha384 }],
  [TPM_ALG_SHA512, { name: "sha512", size: 64, hash: sha512 }],
  [TPM_ALG_SM3_256, { name: "sm3_256", size: 32 }],
]);

export function algorithmName(id: number): string {
  return KNOWN.get(id)?.name ?? `alg_0x${id.toString(16).padStart(4, "0")}`;
}

/** Digest size a known algorithm must have, or undefined for algorithms we do not know. */
export function knownDigestSize(id: number): number | undefined {
  return KNOWN.get(id)?.size;
}

export function hashFunction(id: number): ((data: Uint8Array) => Uint8Array) | undefined {
  return KNOWN.get(id)?.hash;
}

/** Reverse lookup for command-line/JSON users ("sha384" -> 0x000c). */
export function algorithmId(name: string): number | undefined {
  for (const [id, a] of KNOWN) if (a.name === name.toLowerCase().replace(/-/g, "")) return id;
  return undefined;
}
