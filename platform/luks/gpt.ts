// GUID Partition Table: pure codec (UEFI 2.10 §5.3). Only what root discovery needs: the header
// at LBA 1, its CRC, the entry array and its CRC. Every size is bounded: the disk is host input.
import { ParseError } from "../util/errors.ts";
import { ByteReader } from "../util/reader.ts";
import { guidFromBytes } from "../util/guid.ts";

/** Discoverable Partitions Specification: root partition, x86-64 (SD_GPT_ROOT_X86_64). */
export const GPT_ROOT_X86_64 = "4f68bce3-e8cd-4db1-96e7-fbcaf984b709";
export const GPT_MAX_ENTRIES = 256;
export const GPT_MAX_ENTRY_SIZE = 1024;
const STRUCT = "GPT header";

export interface GptPartition {
  /** 1-based partition number (as Linux numbers partitions). */
  number: number;
  typeGuid: string;
  uniqueGuid: string;
  firstLba: bigint;
  lastLba: bigint;
  attributes: bigint;
  name: string;
}

export interface GptHeader {
  sectorSize: number;
  entriesLba: bigint;
  entryCount: number;
  entrySize: number;
  entriesCrc: number;
  diskGuid: string;
}

const CRC_TABLE = (() => {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[n] = c >>> 0;
  }
  return t;
})();

/** CRC-32 (IEEE 802.3), as GPT uses it. */
export function crc32(data: Uint8Array): number {
  let c = 0xffffffff;
  for (const b of data) c = CRC_TABLE[(c ^ b) & 0xff]! ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

/** GPT stores GUIDs mixed-endian (the first three groups little-endian). */

/** Parse the GPT header from the sector at LBA 1 (`sector` = exactly one logical sector). */
export function parseGptHeader(sector: Uint8Array): GptHeader {
  const r = new ByteReader(sector, STRUCT);
  const sig = r.bytes(8, "signature");
  if (Buffer.from(sig).toString("latin1") !== "EFI PART") r.fail("signature", 'is not "EFI PART"', 0);
  const revision = r.u32le("revision");
  if (revision !== 0x00010000) r.fail("revision", `0x${revision.toString(16)} is not 1.0`, 8);
  const headerSize = r.u32le("header_size");
  if (headerSize < 92 || headerSize > sector.length)
    r.fail("header_size", `${headerSize} is outside 92..${sector.length}`, 12);
  const crc = r.u32le("header_crc32");
  const copy = sector.slice(0, headerSize);
  copy.fill(0, 16, 20);
  if (crc32(copy) !== crc) r.fail("header_crc32", "CRC-32 does not match", 16);
  r.skip(4, "reserved");
  const myLba = r.u64le("my_lba");
  if (myLba !== 1n) r.fail("my_lba", `is ${myLba}, expected 1 for the primary header`, 24);
  r.skip(8, "alternate_lba");
  r.skip(16, "first/last usable lba");
  const diskGuid = guidFromBytes(r.bytes(16, "disk_guid"), "uefi");
  const entriesLba = r.u64le("partition_entry_lba");
  if (entriesLba < 2n || entriesLba > 1n << 40n)
    r.fail("partition_entry_lba", `${entriesLba} is not a plausible LBA`, 72);
  const entryCount = r.u32le("number_of_partition_entries");
  if (entryCount === 0 || entryCount > GPT_MAX_ENTRIES)
    r.fail("number_of_partition_entries", `${entryCount} is outside 1..${GPT_MAX_ENTRIES}`, 80);
  const entrySize = r.u32le("size_of_partition_entry");
  if (entrySize < 128 || entrySize > GPT_MAX_ENTRY_SIZE || entrySize % 8 !== 0)
    r.fail("size_of_partition_entry", `${entrySize} is not a multiple of 8 in 128..${GPT_MAX_ENTRY_SIZE}`, 84);
  const entriesCrc = r.u32le("partition_entry_array_crc32");
  return { sectorSize: sector.length, entriesLba, entryCount, entrySize, entriesCrc, diskGuid };
}

/** Parse the entry array (exactly entryCount * entrySize bytes); unused entries are skipped. */
export function parseGptEntries(h: GptHeader, array: Uint8Array): GptPartition[] {
  if (array.length !== h.entryCount * h.entrySize)
    throw new ParseError(
      "GPT entries",
      "array",
      0,
      `expected ${h.entryCount * h.entrySize} bytes, got ${array.length}`,
    );
  if (crc32(array) !== h.entriesCrc)
    throw new ParseError("GPT entries", "array", 0, "CRC-32 does not match the header's partition_entry_array_crc32");
  const out: GptPartition[] = [];
  for (let i = 0; i < h.entryCount; i++) {
    const r = new ByteReader(array.subarray(i * h.entrySize, (i + 1) * h.entrySize), `GPT entry ${i + 1}`);
    const type = r.bytes(16, "partition_type_guid");
    if (type.every((b) => b === 0)) continue;
    const uniqueGuid = guidFromBytes(r.bytes(16, "unique_partition_guid"), "uefi");
    const firstLba = r.u64le("starting_lba");
    const lastLba = r.u64le("ending_lba");
    if (lastLba < firstLba) r.fail("ending_lba", `${lastLba} is before starting_lba ${firstLba}`, 40);
    const attributes = r.u64le("attributes");
    const nameBytes = r.bytes(72, "partition_name");
    let end = 0;
    while (end < 72 && (nameBytes[end] !== 0 || nameBytes[end + 1] !== 0)) end += 2;
    const name = Buffer.from(nameBytes.subarray(0, end)).toString("utf16le");
    out.push({ number: i + 1, typeGuid: guidFromBytes(type, "uefi"), uniqueGuid, firstLba, lastLba, attributes, name });
  }
  return out;
}

/** GPT attribute bit 63..48 are type-specific; for root partitions bit 63 = "do not automount". */
export const GPT_FLAG_NO_AUTO = 1n << 63n;
