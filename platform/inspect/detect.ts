// Which structure is this? Decided from magic numbers and fixed fields only, most specific first;
// the chosen decoder then validates everything. `--type` overrides this.
import { CERT_GUIDS } from "../snp/certs.ts";
import { guidToString } from "../snp/certs.ts";
import { isTerminator, parseEventLog } from "../eventlog/index.ts";
import type { InspectType } from "./model.ts";

const ascii = (b: Uint8Array, from: number, to: number) => new TextDecoder("latin1").decode(b.subarray(from, to));

function u16(b: Uint8Array, o: number): number {
  return b[o]! | (b[o + 1]! << 8);
}
function u32(b: Uint8Array, o: number): number {
  return (b[o]! | (b[o + 1]! << 8) | (b[o + 2]! << 16) | (b[o + 3]! << 24)) >>> 0;
}

function looksLikeCcel(b: Uint8Array): boolean {
  try {
    const log = parseEventLog(b);
    // Firmware CCEL areas are padded; an unpadded one is recognised by TDVF's SHA-384-only bank
    // and MR indexes 0..4.
    return log.end === "terminator" || (log.algorithms.every((a) => a.id === 0x000c || a.id === 0x0012) && log.events.every((e) => e.index <= 4));
  } catch {
    return false;
  }
}

export function detectType(b: Uint8Array): InspectType | undefined {
  if (b.length >= 4 && ascii(b, 0, 4) === "HCLA") return "hcl-report";
  if (b.length >= 8 && ascii(b, 0, 4) === "CCEL" && u32(b, 4) === 56) return "ccel-table";
  if (b.length >= 8 && (u16(b, 0) === 4 || u16(b, 0) === 5) && u16(b, 2) === 2 && u32(b, 4) === 0x81) return "tdx-quote";
  if (b.length >= 48 && u32(b, 4) === 3 && ascii(b, 32, 48) === "Spec ID Event03\0") return looksLikeCcel(b) ? "ccel" : "eventlog";
  if (b.length === 1024 && b[0] === 0x81 && b[1] === 0) return "tdx-report";
  if (b.length >= 0x4a0 && b.length <= 0x4a0 + 4096 && u32(b, 0) >= 2 && u32(b, 0) <= 5 && u32(b, 0x34) === 1) return "snp-report";
  if (b.length >= 24 && (Object.values(CERT_GUIDS) as string[]).includes(guidToString(b.subarray(0, 16)))) return "snp-certs";
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
