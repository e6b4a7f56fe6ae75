// SMBIOS structure codec for the entries Linux exposes in /sys/firmware/dmi/entries/<type>-<n>/raw:
// a formatted area (type u8, length u8, handle u16, then type-specific fields) followed by the
// string set (NUL-terminated strings, ended by an extra NUL). Type 11 "OEM Strings" holds a
// count byte at offset 4 and that many strings; QEMU fills it from `-smbios type=11,value=...`.
// The host writes these bytes: every length is checked (docs/spec/firmware.md §1).
import { ByteReader } from "../util/reader.ts";

export const SMBIOS_OEM_STRINGS = 11;
/** A type-11 entry QEMU builds is at most a few KiB; the cap only bounds a hostile one. */
export const MAX_SMBIOS_ENTRY_BYTES = 128 * 1024;

export interface SmbiosStructure {
  type: number;
  handle: number;
  formatted: Uint8Array;
  strings: string[];
}

export function parseSmbiosStructure(raw: Uint8Array): SmbiosStructure {
  const r = new ByteReader(raw, "SMBIOS structure");
  if (raw.length > MAX_SMBIOS_ENTRY_BYTES)
    r.fail("length", `${raw.length} bytes is more than the ${MAX_SMBIOS_ENTRY_BYTES}-byte limit`, 0);
  const type = r.u8("type");
  const length = r.u8("length");
  if (length < 4) r.fail("length", `formatted area of ${length} bytes is shorter than the 4-byte header`, 1);
  const handle = r.u16le("handle");
  r.seek(0);
  const formatted = r.bytes(length, "formatted area");
  const strings: string[] = [];
  const decoder = new TextDecoder("utf-8", { fatal: false });
  // The string set: an empty set is two NULs; otherwise strings each end in NUL and a NUL follows.
  let start = r.offset;
  if (raw[start] === 0) {
    r.bytes(2, "string set terminator");
    return { type, handle, formatted, strings };
  }
  for (let i = start; ; i++) {
    if (i >= raw.length) r.fail("string set", "not terminated by a double NUL", start);
    if (raw[i] !== 0) continue;
    strings.push(decoder.decode(raw.subarray(start, i)));
    start = i + 1;
    if (raw[start] === 0) break;
  }
  return { type, handle, formatted, strings };
}

/** The OEM strings of a type-11 structure, in order; the count byte must match the string set. */
export function smbiosOemStrings(raw: Uint8Array): string[] {
  const s = parseSmbiosStructure(raw);
  const r = new ByteReader(s.formatted, "SMBIOS type 11");
  if (s.type !== SMBIOS_OEM_STRINGS) r.fail("type", `is ${s.type}, expected ${SMBIOS_OEM_STRINGS} (OEM Strings)`, 0);
  const count = r.seek(4).u8("count");
  if (count > s.strings.length)
    r.fail("count", `says ${count} strings, but the string set holds ${s.strings.length}`, 4);
  return s.strings.slice(0, count);
}
