// The GHCB certificate table the host hands to an SNP guest (docs/spec/snp-abi.md §1.4): 24-byte entries
// {GUID, offset, length} ending with an all-zero entry; offsets are from the start of the buffer.
// Host-controlled: every offset/length is bounds-checked and a bad entry is named. Pure.
import { isAllZero } from "../util/bytes.ts";
import { ParseError } from "../util/errors.ts";
import { ByteReader, ByteWriter } from "../util/reader.ts";
import { guidFromBytes, guidToBytes } from "../util/guid.ts";

/** trustee / virtee CertType (serde): named variants, or {"OTHER": uuid}. */
export type CertType = "ARK" | "ASK" | "VCEK" | "VLEK" | "CRL" | "Empty" | { OTHER: string };

/** GUIDs in RFC-4122 string order, which is also their byte order in the table. */
export const CERT_GUIDS = {
  VCEK: "63da758d-e664-4564-adc5-f4b93be8accd",
  VLEK: "a8074bc2-a25a-483e-aae6-39c045a0b8a1",
  ASK: "4ab7b379-bbac-4fe4-a02f-05aef327c782",
  ARK: "c0b406a4-a803-4952-9743-3fb6014cd0ae",
  CRL: "92f81bc3-5811-4d3d-97ff-d19f88dc67ea",
} as const;

const ENTRY_SIZE = 24;
/** A real table has 3-5 entries; anything beyond this is garbage. */
export const MAX_CERT_TABLE_ENTRIES = 64;
const STRUCT = "SNP certificate table";

export interface CertTableEntry {
  guid: string;
  type: CertType;
  offset: number;
  length: number;
  data: Uint8Array;
}

export function certTypeForGuid(guid: string): CertType {
  for (const [name, g] of Object.entries(CERT_GUIDS)) if (g === guid) return name as CertType;
  return { OTHER: guid };
}

export function certTypeName(t: CertType): string {
  return typeof t === "string" ? t : `OTHER(${t.OTHER})`;
}

/** Parse a certificate table. An empty or all-zero buffer is an empty table. */
export function parseCertTable(buf: Uint8Array): CertTableEntry[] {
  if (buf.length === 0 || isAllZero(buf)) return [];
  const r = new ByteReader(buf, STRUCT);
  const raw: { guid: string; offset: number; length: number; at: number }[] = [];
  for (;;) {
    const at = r.offset;
    if (raw.length > MAX_CERT_TABLE_ENTRIES)
      r.fail(`entry[${raw.length}]`, `more than ${MAX_CERT_TABLE_ENTRIES} entries without a terminator`, at);
    if (r.remaining < ENTRY_SIZE)
      r.fail(`entry[${raw.length}]`, "table ends without the all-zero terminating entry", at);
    const guidBytes = r.bytes(16, `entry[${raw.length}].guid`);
    const offset = r.u32le(`entry[${raw.length}].offset`);
    const length = r.u32le(`entry[${raw.length}].length`);
    if (isAllZero(guidBytes)) {
      if (offset !== 0 || length !== 0)
        r.fail(`entry[${raw.length}]`, "zero GUID with a non-zero offset/length (not a terminator)", at);
      break;
    }
    raw.push({ guid: guidFromBytes(guidBytes, "rfc4122"), offset, length, at });
  }
  const tableEnd = r.offset;
  const seen = new Set<string>();
  return raw.map((e, i) => {
    const type = certTypeForGuid(e.guid);
    const name = `entry[${i}] (${certTypeName(type)})`;
    if (seen.has(e.guid))
      throw new ParseError(STRUCT, name, e.at, "duplicate GUID: which certificate to use is ambiguous");
    seen.add(e.guid);
    if (e.length === 0) throw new ParseError(STRUCT, name, e.at + 20, "zero-length certificate");
    if (e.offset < tableEnd)
      throw new ParseError(
        STRUCT,
        name,
        e.at + 16,
        `offset ${e.offset} points into the entry table (which ends at ${tableEnd})`,
      );
    if (e.offset + e.length > buf.length)
      throw new ParseError(
        STRUCT,
        name,
        e.at + 16,
        `offset ${e.offset} + length ${e.length} points outside the ${buf.length}-byte buffer`,
      );
    return { guid: e.guid, type, offset: e.offset, length: e.length, data: buf.slice(e.offset, e.offset + e.length) };
  });
}

/** Build a table (tests, the stand-in kernel): entries, terminator, then the certificates. */
export function encodeCertTable(entries: { guid: string; data: Uint8Array }[], padTo = 0): Uint8Array {
  const header = (entries.length + 1) * ENTRY_SIZE;
  const w = new ByteWriter();
  let off = header;
  for (const e of entries) {
    w.bytes(guidToBytes(e.guid, "rfc4122")).u32le(off).u32le(e.data.length);
    off += e.data.length;
  }
  w.zeros(ENTRY_SIZE);
  for (const e of entries) w.bytes(e.data);
  while (w.length < padTo) w.u8(0);
  return w.finish();
}
