// GUIDs as strings ("4f68bce3-e8cd-4db1-96e7-fbcaf984b709") ↔ 16 bytes. Two byte orders exist:
// - "uefi": UEFI/Microsoft mixed-endian, the first three groups little-endian (GPT, EFI variables);
// - "rfc4122": bytes in string order (the SEV-SNP GHCB certificate table, as virtee/trustee read it).
import { hex } from "./bytes.ts";
import { ParseError } from "./errors.ts";

export type GuidByteOrder = "uefi" | "rfc4122";

const GUID_TEXT = /^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$/;
/** Byte permutation between string order and UEFI order (its own inverse). */
const UEFI_ORDER = [3, 2, 1, 0, 5, 4, 7, 6, 8, 9, 10, 11, 12, 13, 14, 15];

function reorder(b: Uint8Array, order: GuidByteOrder): Uint8Array {
  return order === "uefi" ? Uint8Array.from(UEFI_ORDER, (i) => b[i]!) : b;
}

/** Lowercase dashed form of a 16-byte GUID. */
export function guidFromBytes(b: Uint8Array, order: GuidByteOrder): string {
  if (b.length !== 16) throw new ParseError("GUID", "guid", 0, `a GUID is 16 bytes, got ${b.length}`);
  const h = hex(reorder(b, order));
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20, 32)}`;
}

/** 16 bytes of a dashed GUID string; ParseError when it is not one. */
export function guidToBytes(s: string, order: GuidByteOrder): Uint8Array {
  if (!GUID_TEXT.test(s))
    throw new ParseError("GUID", "guid", 0, `not a dashed GUID: ${JSON.stringify(s.slice(0, 64))}`);
  return reorder(new Uint8Array(Buffer.from(s.replace(/-/g, ""), "hex")), order);
}
