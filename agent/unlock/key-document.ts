// The KBS resource that carries a disk key: either the raw key bytes, or a small versioned JSON
// document that also pins the volume the key is meant for (docs/UNLOCK.md "Key resource"):
//
//   {"cvm_unlock_key": 1, "key": "<standard base64>",
//    "pins": {"uuid": "<LUKS UUID>", "luks2_digest_sha256": "<64 hex>"}}
//
// luks2_digest_sha256 = SHA-256 of the RFC 8785 (JCS) text of the header's "digests" object with
// each digest's "keyslots" member removed. It changes when the volume key changes (a different
// LUKS container), but not when keyslots or tokens are added or removed.
import { sha256 } from "@noble/hashes/sha2.js";
import { SHA256_HEX, UUID_PATTERN } from "../config/patterns.ts";
import { canonicalize, JcsError } from "../kbs/jcs.ts";
import { hex } from "../../platform/util/bytes.ts";
import { CvmError } from "../../platform/util/errors.ts";
import type { Luks2Header } from "../../platform/luks/luks2-header.ts";

export const KEY_DOCUMENT_VERSION = 1;
const MAX_KEY_BYTES = 8192;
/** RFC 4648 standard base64 with padding, canonical length. */
const STD_B64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

export interface VolumePins {
  uuid?: string;
  luks2DigestSha256?: string;
}

/** The key bytes (a view into a buffer the caller zeroes) and the pins that came with it. */
export interface DiskKey {
  key: Buffer;
  pins: VolumePins;
  format: "raw" | "document";
}

function refuse(problem: string): never {
  throw new CvmError("kbs-protocol", `the KBS resource is a malformed cvm-unlock key document: ${problem}`, {
    hint: 'the resource must be the raw key or {"cvm_unlock_key":1,"key":BASE64,"pins":{...}} (docs/UNLOCK.md)',
  });
}

/**
 * Interpret a fetched resource. The returned `key` shares memory with `resource` for raw keys; for
 * documents it is a fresh buffer. Either way the caller zeroes `resource` and `key` after use.
 */
export function parseKeyResource(resource: Buffer): DiskKey {
  if (resource.length === 0) throw new CvmError("kbs-protocol", "the KBS resource is empty");
  if (resource[0] !== 0x7b /* { */) return rawKey(resource);
  let doc: unknown;
  try {
    doc = JSON.parse(resource.toString("utf8"));
  } catch {
    return rawKey(resource); // a binary key that happens to start with '{'
  }
  if (typeof doc !== "object" || doc === null || Array.isArray(doc) || !("cvm_unlock_key" in doc))
    return rawKey(resource);
  const d = doc as Record<string, unknown>;
  if (d.cvm_unlock_key !== KEY_DOCUMENT_VERSION)
    refuse(`version ${JSON.stringify(d.cvm_unlock_key)} is not supported (expected ${KEY_DOCUMENT_VERSION})`);
  for (const k of Object.keys(d))
    if (!["cvm_unlock_key", "key", "pins"].includes(k)) refuse(`unknown member ${JSON.stringify(k)}`);
  if (typeof d.key !== "string") refuse("'key' must be a base64 string");
  if (!STD_B64.test(d.key)) refuse("'key' is not canonical padded base64");
  const keyBytes = Buffer.byteLength(d.key, "base64");
  if (keyBytes === 0 || keyBytes > MAX_KEY_BYTES) refuse(`'key' must decode to 1..${MAX_KEY_BYTES} bytes`);
  const pins = parsePins(d.pins); // before decoding: a refusal then leaves no key bytes behind
  const key = decodeKeyInto(d.key, keyBytes);
  d.key = ""; // drop our reference to the base64 text (the string itself cannot be zeroed)
  return { key, pins, format: "document" };
}

/**
 * Decode straight into one buffer of our own: Buffer.from(string) would take its memory from the
 * shared allocation pool and a Uint8Array copy would leave a second, unzeroed copy of the key.
 */
function decodeKeyInto(b64: string, length: number): Buffer {
  const key = Buffer.alloc(length); // never pooled
  const written = key.write(b64, "base64");
  if (written !== length) {
    key.fill(0);
    refuse("'key' is not canonical padded base64");
  }
  return key;
}

function rawKey(resource: Buffer): DiskKey {
  if (resource.length > MAX_KEY_BYTES)
    throw new CvmError(
      "kbs-protocol",
      `the KBS resource is ${resource.length} bytes; a raw key may be at most ${MAX_KEY_BYTES}`,
    );
  return { key: resource, pins: {}, format: "raw" };
}

function parsePins(v: unknown): VolumePins {
  if (v === undefined) return {};
  if (typeof v !== "object" || v === null || Array.isArray(v)) refuse("'pins' must be an object");
  const p = v as Record<string, unknown>;
  const out: VolumePins = {};
  for (const [k, val] of Object.entries(p)) {
    if (k === "uuid") {
      if (typeof val !== "string" || !UUID_PATTERN.test(val)) refuse("'pins.uuid' is not a UUID");
      out.uuid = val.toLowerCase();
    } else if (k === "luks2_digest_sha256") {
      if (typeof val !== "string" || !SHA256_HEX.test(val)) refuse("'pins.luks2_digest_sha256' must be 64 hex digits");
      out.luks2DigestSha256 = val.toLowerCase();
    } else refuse(`unknown pin ${JSON.stringify(k)}`);
  }
  return out;
}

/** The volume-key digest fingerprint pinned by luks2_digest_sha256 (see the file comment). */
export function luks2DigestFingerprint(header: Luks2Header): string {
  const digests: Record<string, Record<string, unknown>> = {};
  for (const [id, d] of Object.entries(header.json.digests)) {
    const { keyslots: _ignored, ...rest } = d;
    digests[id] = rest;
  }
  return hex(sha256(new TextEncoder().encode(canonicalize(digests))));
}

/** Refuse before any key is handed over when the volume is not the one the pins name. */
export function checkPins(pins: VolumePins, header: Luks2Header, device: string): void {
  if (pins.uuid !== undefined && pins.uuid !== header.uuid)
    throw new CvmError(
      "volume",
      `${device} has LUKS UUID ${header.uuid} but the KBS key is pinned to ${pins.uuid}: refusing (swapped volume?)`,
    );
  if (pins.luks2DigestSha256 !== undefined) {
    let actual: string;
    try {
      actual = luks2DigestFingerprint(header);
    } catch (e) {
      // The digests come from the (host-controlled) header: one JCS cannot encode is a refusal, not a bug.
      if (!(e instanceof JcsError)) throw e;
      throw new CvmError(
        "volume",
        `${device}: the LUKS2 header's digests cannot be fingerprinted for the pin (${e.message.slice(0, 200)}): refusing`,
      );
    }
    if (actual !== pins.luks2DigestSha256)
      throw new CvmError(
        "volume",
        `${device}: LUKS2 volume-key digest fingerprint ${actual} does not match the pin ${pins.luks2DigestSha256} from the KBS: refusing (swapped or re-keyed volume?)`,
      );
  }
}
