// Which structure is this? Decided from magic numbers and fixed fields only, most specific first;
// the chosen decoder then validates everything. `--type` overrides this.
import { CERT_GUIDS } from "../../platform/snp/certs.ts";
import { guidFromBytes } from "../../platform/util/guid.ts";
import { isTerminator, parseEventLog } from "../../platform/eventlog/parse.ts";
import type { InspectType } from "./model.ts";
import { findPrimaryEvidence, parseJsonInput } from "./evidence.ts";

const ascii = (b: Uint8Array, from: number, to: number) => new TextDecoder("latin1").decode(b.subarray(from, to));

function u16(b: Uint8Array, o: number): number {
  return b[o]! | (b[o + 1]! << 8);
}
function u32(b: Uint8Array, o: number): number {
  return (b[o]! | (b[o + 1]! << 8) | (b[o + 2]! << 16) | (b[o + 3]! << 24)) >>> 0;
}

function looksLikeEvidenceJson(b: Uint8Array): boolean {
  let i = 0;
  while (i < b.length && (b[i] === 0x20 || b[i] === 0x0a || b[i] === 0x0d || b[i] === 0x09)) i++;
  if (b[i] !== 0x7b) return false; // '{'
  try {
    return findPrimaryEvidence(parseJsonInput(b)) !== undefined;
  } catch {
    return false;
  }
}

function looksLikeCcel(b: Uint8Array): boolean {
  try {
    const log = parseEventLog(b);
    // Firmware CCEL areas are padded; an unpadded one is recognised by TDVF's SHA-384-only bank
    // and MR indexes 0..4.
    return (
      log.end === "terminator" ||
      (log.algorithms.every((a) => a.id === 0x000c || a.id === 0x0012) && log.events.every((e) => e.index <= 4))
    );
  } catch {
    return false;
  }
}

export function detectType(b: Uint8Array): InspectType | undefined {
  if (looksLikeEvidenceJson(b)) return "evidence-json";
  if (b.length >= 4 && ascii(b, 0, 4) === "HCLA") return "hcl-report";
  if (b.length >= 8 && ascii(b, 0, 4) === "CCEL" && u32(b, 4) === 56) return "ccel-table";
  if (b.length >= 8 && (u16(b, 0) === 4 || u16(b, 0) === 5) && u16(b, 2) === 2 && u32(b, 4) === 0x81)
    return "tdx-quote";
  if (b.length >= 48 && u32(b, 4) === 3 && ascii(b, 32, 48) === "Spec ID Event03\0")
    return looksLikeCcel(b) ? "ccel" : "eventlog";
  if (b.length === 1024 && b[0] === 0x81 && b[1] === 0) return "tdx-report";
  if (b.length >= 0x4a0 && b.length <= 0x4a0 + 4096 && u32(b, 0) >= 2 && u32(b, 0) <= 5 && u32(b, 0x34) === 1)
    return "snp-report";
  if (b.length >= 24 && (Object.values(CERT_GUIDS) as string[]).includes(guidFromBytes(b.subarray(0, 16), "rfc4122")))
    return "snp-certs";
  // Legacy SHA-1 logs have no magic: accept only if the whole input parses as one.
  if (b.length >= 32 && u32(b, 0) <= 23 && !isTerminator(b, 0)) {
    try {
      const log = parseEventLog(b);
      if (log.format === "sha1" && log.events.length > 0) return "eventlog";
    } catch {
      /* not a log */
    }
  }
  return undefined;
}

const HEX_TEXT = /^[0-9a-fA-F\s]+$/;
const B64_TEXT = /^[A-Za-z0-9+/=_\-\s]+$/;

/**
 * Artefacts are often passed around as hex or base64 text (virtee's report_milan.hex, a quote copied
 * from evidence JSON). When the raw bytes are not recognised, try those decodings and keep the
 * first one whose result is.
 */
export function unwrapText(b: Uint8Array): { bytes: Uint8Array; encoding: "hex" | "base64" } | undefined {
  if (b.length < 16 || b.length > 64 * 1024 * 1024) return undefined;
  const text = new TextDecoder("latin1").decode(b);
  const compact = text.replace(/\s+/g, "");
  const tries: Array<["hex" | "base64", () => Uint8Array | undefined]> = [
    [
      "hex",
      () => (HEX_TEXT.test(text) && compact.length % 2 === 0 ? new Uint8Array(Buffer.from(compact, "hex")) : undefined),
    ],
    [
      "base64",
      () =>
        B64_TEXT.test(text)
          ? new Uint8Array(Buffer.from(compact.replace(/-/g, "+").replace(/_/g, "/"), "base64"))
          : undefined,
    ],
  ];
  for (const [encoding, decode] of tries) {
    const bytes = decode();
    if (bytes && bytes.length > 0 && detectType(bytes) !== undefined) return { bytes, encoding };
  }
  return undefined;
}
