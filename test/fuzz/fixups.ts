// Integrity fix-ups applied after mutation: a flipped bit behind a checksum only ever exercises the
// checksum check, so most inputs get their checksums and size fields recomputed and reach the field
// checks behind them. Each fix-up writes exactly what the format's producer would have written.
import { sha256 } from "@noble/hashes/sha2.js";
import { crc32 } from "../../platform/luks/gpt.ts";

/** TPM 2.0 response header: responseSize (u32 BE at offset 2) = the bytes actually received. */
export function fixTpmResponseSize(b: Uint8Array): Uint8Array {
  if (b.length >= 6) new DataView(b.buffer, b.byteOffset, b.byteLength).setUint32(2, b.length, false);
  return b;
}

const LUKS2_CSUM_OFFSET = 448;
const LUKS2_CSUM_LEN = 64;

/** LUKS2: csum = SHA-256 over the whole header area with the 64-byte csum field zeroed (cryptsetup). */
export function fixLuks2Checksum(b: Uint8Array): Uint8Array {
  if (b.length < LUKS2_CSUM_OFFSET + LUKS2_CSUM_LEN) return b;
  b.fill(0, LUKS2_CSUM_OFFSET, LUKS2_CSUM_OFFSET + LUKS2_CSUM_LEN);
  b.set(sha256(b), LUKS2_CSUM_OFFSET);
  return b;
}

/** GPT image as the fuzz target reads it: protective MBR, header at LBA 1, entries at partition_entry_lba. */
export const GPT_SECTOR = 512;

/**
 * GPT: recompute partition_entry_array_crc32 over the entries the header points at (when they are
 * inside the image), then header_crc32 over header_size bytes with the CRC field zeroed (UEFI §5.3.2).
 */
export function fixGptCrcs(b: Uint8Array): Uint8Array {
  if (b.length < 2 * GPT_SECTOR) return b;
  const v = new DataView(b.buffer, b.byteOffset, b.byteLength);
  const h = GPT_SECTOR;
  const headerSize = v.getUint32(h + 12, true);
  const entriesAt = Number(v.getBigUint64(h + 72, true)) * GPT_SECTOR;
  const entriesLen = v.getUint32(h + 80, true) * v.getUint32(h + 84, true);
  if (entriesAt + entriesLen <= b.length)
    v.setUint32(h + 88, crc32(b.subarray(entriesAt, entriesAt + entriesLen)), true);
  if (headerSize >= 92 && headerSize <= GPT_SECTOR) {
    v.setUint32(h + 16, 0, true);
    v.setUint32(h + 16, crc32(b.subarray(h, h + headerSize)), true);
  }
  return b;
}

const ACPI_CHECKSUM_OFFSET = 9;

/** ACPI table (CCEL): the checksum byte makes all `Length` bytes sum to zero mod 256. */
export function fixAcpiChecksum(b: Uint8Array): Uint8Array {
  if (b.length < 10) return b;
  const length = Math.min(b.length, new DataView(b.buffer, b.byteOffset, b.byteLength).getUint32(4, true));
  b[ACPI_CHECKSUM_OFFSET] = 0;
  let sum = 0;
  for (let i = 0; i < length; i++) sum = (sum + b[i]!) & 0xff;
  b[ACPI_CHECKSUM_OFFSET] = (256 - sum) & 0xff;
  return b;
}
