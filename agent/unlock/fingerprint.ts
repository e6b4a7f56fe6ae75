// Volume fingerprints that key documents and the trusted config pin (docs/UNLOCK.md §4).
//
// luks2_fingerprint_v2 = SHA-256 of the RFC 8785 (JCS) text of
//   {"digests": {ID: <digest without "keyslots">, ...},
//    "segments": {ID: {"type", "encryption", "key_size" (bits), "sector_size", "offset", "size"}, ...},
//    "v": 2}
// It identifies the volume key (its PBKDF2 digest) AND how the data is encrypted and where it
// lies, so a host that rewrites the segment (cipher_null, ecb, another offset) changes it. Keyslot
// parameters stay out, so adding or wiping a keyslot does not change it; keyslots are checked
// against the allow-list instead (header-policy.ts). "key_size" is the volume key size on which
// the segment's keyslots agree.
import { sha256 } from "@noble/hashes/sha2.js";
import { hex } from "../../platform/util/bytes.ts";
import { CvmError, ParseError } from "../../platform/util/errors.ts";
import type { Luks2Header } from "../../platform/luks/luks2-header.ts";
import { parseLuks2Layout, segmentKey, type Luks2Layout } from "../../platform/luks/luks2-layout.ts";
import { canonicalize, JcsError } from "../kbs/jcs.ts";

export const FINGERPRINT_V2_VERSION = 2;

function digestsWithoutKeyslots(header: Luks2Header): Record<string, Record<string, unknown>> {
  const digests: Record<string, Record<string, unknown>> = {};
  for (const [id, d] of Object.entries(header.json.digests)) {
    const { keyslots: _ignored, ...rest } = d;
    digests[id] = rest;
  }
  return digests;
}

/** SHA-256 hex of the JCS text; a host value JCS cannot encode is a volume error, never an internal one. */
export function jcsSha256(value: unknown, what: string): string {
  try {
    return hex(sha256(new TextEncoder().encode(canonicalize(value))));
  } catch (e) {
    if (e instanceof JcsError)
      throw new CvmError("volume", `LUKS2 header: ${what} cannot be fingerprinted (${e.message})`);
    throw e;
  }
}

/** luks2_digest_sha256 (v1): the volume-key digests only (see docs/UNLOCK.md). */
export function luks2DigestFingerprint(header: Luks2Header): string {
  return jcsSha256(digestsWithoutKeyslots(header), "digests");
}

/** luks2_fingerprint_v2 of a header (see the file comment). Malformed metadata is a `volume` error. */
export function luks2FingerprintV2(header: Luks2Header, layout?: Luks2Layout): string {
  let l: Luks2Layout;
  const segments: Record<string, Record<string, unknown>> = {};
  try {
    l = layout ?? parseLuks2Layout(header);
    for (const s of l.segments) {
      const { keyBytes } = segmentKey(l, s);
      segments[s.id] = {
        type: s.type,
        encryption: s.encryption,
        key_size: keyBytes * 8,
        sector_size: s.sectorSize,
        offset: s.offset.toString(),
        size: s.size === "dynamic" ? "dynamic" : s.size.toString(),
      };
    }
  } catch (e) {
    if (e instanceof ParseError) throw new CvmError("volume", e.message, { cause: e });
    throw e;
  }
  return jcsSha256({ digests: digestsWithoutKeyslots(header), segments, v: FINGERPRINT_V2_VERSION }, "digests");
}
