// After `cryptsetup open`: read the live dm-crypt table back and compare it with what was verified
// (header-policy.ts). `dmsetup table NAME` masks the key (zeros, or a kernel keyring reference
// such as ":64:logon:cryptsetup:…"); --showkeys is never used, so the key never reaches us here.
// `cryptsetup status` is not used: it prints the cipher and key size from the LUKS2 header, not
// from the kernel, so it cannot show what the mapping really does.
//
// dm-crypt table (Documentation/admin-guide/device-mapper/dm-crypt.rst):
//   <start> <length> crypt <cipher> <key> <iv_offset> <device> <offset> [<#opt_params> <opt_params>...]
import * as fs from "node:fs";
import * as path from "node:path";
import { readSmall } from "../../platform/luks/block-devices.ts";
import type { Luks2Volume } from "../../platform/luks/volume-io.ts";
import type { VerifiedLayout } from "./header-policy.ts";

const MAX_TABLE = 4096;
const SECTOR = 512n;
/** Optional parameters that only tune performance; anything else (allow_discards, integrity:…) differs. */
const PERFORMANCE_OPTIONS = [
  "same_cpu_crypt",
  "submit_from_crypt_cpus",
  "no_read_workqueue",
  "no_write_workqueue",
  "high_priority",
];

export interface DmCryptTable {
  start: bigint;
  /** 512-byte sectors. */
  length: bigint;
  cipher: string;
  keyBytes: number;
  ivOffset: bigint;
  /** "MAJ:MIN" as the kernel writes it. */
  device: string;
  /** 512-byte sectors. */
  offset: bigint;
  options: string[];
}

const DEC = /^\d{1,20}$/;

/** Parse `dmsetup table NAME` output: exactly one crypt target. Returns a problem string on anything else. */
export function parseDmCryptTable(text: string): DmCryptTable | string {
  if (text.length > MAX_TABLE) return "the table is implausibly long";
  const lines = text.split("\n").filter((l) => l.trim() !== "");
  if (lines.length !== 1) return `the mapping has ${lines.length} targets (expected one crypt target)`;
  const f = lines[0]!.trim().split(/\s+/);
  if (f[2] !== "crypt") return `the target is ${JSON.stringify(f[2] ?? "")}, not crypt`;
  if (f.length < 8) return "the crypt target line is truncated";
  const [start, length, , cipher, key, ivOffset, device, offset] = f as [string, ...string[]];
  if (![start, length, ivOffset, offset].every((x) => DEC.test(x!))) return "a number in the crypt target is malformed";
  if (!/^\d+:\d+$/.test(device!)) return `the backing device ${JSON.stringify(device)} is not MAJ:MIN`;
  let keyBytes: number;
  const ref = /^:(\d{1,4}):/.exec(key!);
  if (ref) keyBytes = Number(ref[1]);
  else if (/^[0-9a-fA-F]+$/.test(key!) && key!.length % 2 === 0) keyBytes = key!.length / 2;
  else return "the key field is neither a masked key nor a keyring reference";
  const rest = f.slice(8);
  const count = rest.length === 0 ? 0 : Number(rest[0]);
  if (rest.length > 0 && (!DEC.test(rest[0]!) || count !== rest.length - 1))
    return "the optional parameter count does not match";
  return {
    start: BigInt(start!),
    length: BigInt(length!),
    cipher: cipher!,
    keyBytes,
    ivOffset: BigInt(ivOffset!),
    device: device!,
    offset: BigInt(offset!),
    options: rest.slice(1),
  };
}

/**
 * What the live mapping must look like: derived from the verified header and the device it was
 * read from (expectedMapping), and plain data so that mode B can keep it in /run between the
 * key server and the unit that checks each mapping (mapping-record.ts).
 */
export interface ExpectedMapping {
  cipher: string;
  keyBytes: number;
  ivOffset: bigint;
  /** 512-byte sectors. */
  offset: bigint;
  /** 512-byte sectors. */
  length: bigint;
  sectorSize: number;
  identity: Luks2Volume["identity"];
}

export function expectedMapping(verified: VerifiedLayout, volume: Luks2Volume): ExpectedMapping {
  const seg = verified.segment;
  const sectorSize = BigInt(seg.sectorSize);
  const bytes = seg.size === "dynamic" ? ((volume.deviceBytes - seg.offset) / sectorSize) * sectorSize : seg.size;
  return {
    cipher: seg.encryption,
    keyBytes: verified.keyBytes,
    ivOffset: seg.ivTweak,
    offset: seg.offset / SECTOR,
    length: bytes / SECTOR,
    sectorSize: seg.sectorSize,
    identity: { ...volume.identity },
  };
}

/** Whether the live mapping sits on the device that was read: same block device, or (image files) its loop device. */
function sameDevice(tableDevice: string, identity: Luks2Volume["identity"], root: string): boolean {
  if (identity.block) return tableDevice === identity.devno;
  const backing = readSmall(path.join(root, "sys/dev/block", tableDevice, "loop/backing_file"))?.trim();
  if (!backing) return false;
  try {
    const st = fs.statSync(backing);
    return st.dev === identity.dev && st.ino === identity.ino;
  } catch {
    return false;
  }
}

/**
 * Every difference between the live table and the expected mapping (empty = identical).
 * `allowedOptions`: optional table parameters the trusted configuration asked for (crypttab's
 * `discard` gives allow_discards), beyond the performance ones.
 */
export function liveTableDifferences(
  table: DmCryptTable,
  expected: ExpectedMapping,
  root: string,
  allowedOptions: readonly string[] = [],
): string[] {
  const diffs: string[] = [];
  const want = (what: string, live: unknown, wanted: unknown) => {
    if (String(live) !== String(wanted)) diffs.push(`${what} is ${live}, verified ${wanted}`);
  };
  want("start", table.start, 0);
  want("cipher", table.cipher, expected.cipher);
  want("key size (bits)", table.keyBytes * 8, expected.keyBytes * 8);
  want("iv offset", table.ivOffset, expected.ivOffset);
  want("data offset (sectors)", table.offset, expected.offset);
  want("length (sectors)", table.length, expected.length);
  if (!sameDevice(table.device, expected.identity, root))
    diffs.push(
      `backing device ${table.device} is not the verified ${expected.identity.block ? expected.identity.devno : "image file"}`,
    );
  const sectorOption = table.options.find((o) => o.startsWith("sector_size:"));
  want("sector size", sectorOption ? sectorOption.slice("sector_size:".length) : "512", expected.sectorSize);
  for (const o of table.options)
    if (
      !o.startsWith("sector_size:") &&
      !PERFORMANCE_OPTIONS.includes(o) &&
      !allowedOptions.includes(o) &&
      !(o === "iv_large_sectors" && expected.sectorSize > 512)
    )
      diffs.push(`unexpected option ${JSON.stringify(o.slice(0, 64))}`);
  return diffs;
}
