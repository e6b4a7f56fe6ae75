// What `bind` stores at the KBS: the raw keyslot passphrase, or a key document (docs/UNLOCK.md
// "Key resource", parsed by agent/unlock/key-document.ts) that also pins the volume. The document
// is assembled straight into one Buffer so the key never becomes an immutable JS string.
import type { Luks2Header } from "../../platform/luks/luks2-header.ts";
import { CvmError } from "../../platform/util/errors.ts";
import { luks2FingerprintV2 } from "../unlock/fingerprint.ts";
import { KEY_DOCUMENT_VERSION } from "../unlock/key-document.ts";

export type PinKind = "uuid" | "digest";

/**
 * `--pin digest`: luks2_fingerprint_v2 (volume-key digests + data segments, keyslots excluded, so
 * the keyslot bind adds and the ones it wipes do not change it; agent/unlock/fingerprint.ts).
 */
export const DIGEST_PIN = { name: "luks2_fingerprint_v2", of: luks2FingerprintV2 };

export function parsePinKinds(values: string[]): PinKind[] {
  const out: PinKind[] = [];
  for (const v of values) {
    if (v !== "uuid" && v !== "digest")
      throw new CvmError("usage", `--pin ${JSON.stringify(v)}: expected uuid or digest`);
    if (!out.includes(v)) out.push(v);
  }
  return out;
}

/** The pins object for a key document (no secret in it). */
export function volumePins(header: Luks2Header, kinds: PinKind[]): Record<string, string> {
  const pins: Record<string, string> = {};
  if (kinds.includes("uuid")) pins.uuid = header.uuid;
  if (kinds.includes("digest")) pins[DIGEST_PIN.name] = DIGEST_PIN.of(header);
  return pins;
}

/**
 * `{"cvm_unlock_key":1,"key":"<base64>","pins":{...}}` as bytes, or the raw key without pins.
 * The result is a fresh unpooled Buffer the caller zeroes; `key` is not kept.
 */
export function resourceValue(key: Buffer, pins: Record<string, string>): Buffer {
  if (Object.keys(pins).length === 0) {
    const raw = Buffer.alloc(key.length);
    key.copy(raw);
    return raw;
  }
  const head = `{"cvm_unlock_key":${KEY_DOCUMENT_VERSION},"key":"`;
  const tail = `","pins":${JSON.stringify(pins)}}`;
  const b64Len = 4 * Math.ceil(key.length / 3);
  const out = Buffer.alloc(head.length + b64Len + tail.length);
  out.write(head, 0, "latin1");
  base64Into(key, out, head.length);
  out.write(tail, head.length + b64Len, "latin1");
  return out;
}

const ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/** Standard padded base64 of `src` written into `dst` at `at` (Buffer#toString would make a string). */
function base64Into(src: Uint8Array, dst: Buffer, at: number): void {
  let o = at;
  for (let i = 0; i < src.length; i += 3) {
    const n = (src[i]! << 16) | ((src[i + 1] ?? 0) << 8) | (src[i + 2] ?? 0);
    dst[o++] = ALPHABET.charCodeAt((n >> 18) & 63);
    dst[o++] = ALPHABET.charCodeAt((n >> 12) & 63);
    dst[o++] = i + 1 < src.length ? ALPHABET.charCodeAt((n >> 6) & 63) : 0x3d;
    dst[o++] = i + 2 < src.length ? ALPHABET.charCodeAt(n & 63) : 0x3d;
  }
}
