// After `veritysetup open`: the live dm-verity table, read back with `dmsetup table NAME`, must be
// what the KBS's resource says, not what the host's hash-device superblock says: the root hash,
// the hash algorithm, the devices we resolved, the format parameters the resource gives, and a
// corruption mode that lets no corrupted block through.
//
// dm-verity table (Documentation/admin-guide/device-mapper/verity.rst):
//   <start> <length> verity <version> <data_dev> <hash_dev> <data_block_size> <hash_block_size>
//   <num_data_blocks> <hash_start_block> <algorithm> <digest> <salt> [<#opt_params> <opt_params>...]
import type { VerityVolume } from "./resource.ts";

const MAX_TABLE = 4096;
const DEC = /^\d{1,20}$/;

export interface DmVerityTable {
  version: number;
  dataDevice: string;
  hashDevice: string;
  dataBlockSize: number;
  hashBlockSize: number;
  dataBlocks: number;
  hashStartBlock: number;
  algorithm: string;
  digest: string;
  salt: string;
  options: string[];
}

/** Parse `dmsetup table NAME`: exactly one verity target. Returns a problem string on anything else. */
export function parseDmVerityTable(text: string): DmVerityTable | string {
  if (text.length > MAX_TABLE) return "the table is implausibly long";
  const lines = text.split("\n").filter((l) => l.trim() !== "");
  if (lines.length !== 1) return `the mapping has ${lines.length} targets (expected one verity target)`;
  const f = lines[0]!.trim().split(/\s+/);
  if (f[2] !== "verity") return `the target is ${JSON.stringify(f[2] ?? "")}, not verity`;
  if (f.length < 13) return "the verity target line is truncated";
  const nums = [f[0], f[1], f[3], f[6], f[7], f[8], f[9]];
  if (!nums.every((x) => DEC.test(x!))) return "a number in the verity target is malformed";
  if (!/^\d+:\d+$/.test(f[4]!) || !/^\d+:\d+$/.test(f[5]!)) return "a device in the verity target is not MAJ:MIN";
  const rest = f.slice(13);
  const count = rest.length === 0 ? 0 : Number(rest[0]);
  if (rest.length > 0 && (!DEC.test(rest[0]!) || count !== rest.length - 1))
    return "the optional parameter count does not match";
  return {
    version: Number(f[3]),
    dataDevice: f[4]!,
    hashDevice: f[5]!,
    dataBlockSize: Number(f[6]),
    hashBlockSize: Number(f[7]),
    dataBlocks: Number(f[8]),
    hashStartBlock: Number(f[9]),
    algorithm: f[10]!,
    digest: f[11]!.toLowerCase(),
    salt: f[12]!.toLowerCase(),
    options: rest.slice(1),
  };
}

/** Optional parameters that do not weaken verification (the corruption action is checked separately). */
const HARMLESS = ["try_verify_in_tasklet"];
const CORRUPTION = { eio: undefined, panic: "panic_on_corruption", restart: "restart_on_corruption" } as const;

/** Why the live table is not the volume we were given, or undefined when it is. */
export function verityTableProblem(
  t: DmVerityTable,
  v: VerityVolume,
  devices: { data: string; hash: string },
): string | undefined {
  const o = v.options;
  if (t.digest !== v.roothash) return `root hash ${t.digest} is not the one the KBS released`;
  if (t.algorithm !== v.hashAlg) return `hash algorithm ${t.algorithm} is not ${v.hashAlg}`;
  if (t.dataDevice !== devices.data) return `data device ${t.dataDevice} is not ${devices.data}`;
  if (t.hashDevice !== devices.hash) return `hash device ${t.hashDevice} is not ${devices.hash}`;
  if (o.format !== undefined && t.version !== o.format) return `format ${t.version} is not ${o.format}`;
  if (o.dataBlockSize !== undefined && t.dataBlockSize !== o.dataBlockSize)
    return `data block size ${t.dataBlockSize} is not ${o.dataBlockSize}`;
  if (o.hashBlockSize !== undefined && t.hashBlockSize !== o.hashBlockSize)
    return `hash block size ${t.hashBlockSize} is not ${o.hashBlockSize}`;
  if (o.dataBlocks !== undefined && t.dataBlocks !== o.dataBlocks)
    return `${t.dataBlocks} data blocks, not ${o.dataBlocks}`;
  if (o.salt !== undefined && t.salt !== o.salt) return `salt ${t.salt} is not ${o.salt}`;
  const want = CORRUPTION[o.corruption];
  const seen: string[] = [];
  for (let i = 0; i < t.options.length; i++) {
    const p = t.options[i]!;
    if (p === "root_hash_sig_key_desc") {
      i++; // its argument: the kernel checked a signature too
      continue;
    }
    if (HARMLESS.includes(p)) continue;
    if (p === "panic_on_corruption" || p === "restart_on_corruption") {
      seen.push(p);
      continue;
    }
    return `optional parameter ${p} is not allowed`;
  }
  if (seen.length > 1 || seen[0] !== want) return `corruption mode ${seen.join(",") || "eio"} is not ${o.corruption}`;
  return undefined;
}

/**
 * verify-root's check of a mapping it did not open: a single verity target carrying `roothash`, with
 * no optional parameter that lets a corrupted block through. Returns the problem, or undefined.
 */
export function tableCarriesHash(text: string, roothash: string): string | undefined {
  const t = parseDmVerityTable(text);
  if (typeof t === "string") return t;
  if (t.digest !== roothash) return `its root hash ${t.digest} is not the one cvm-unlock opened it with (${roothash})`;
  for (let i = 0; i < t.options.length; i++) {
    const p = t.options[i]!;
    if (p === "root_hash_sig_key_desc") i++;
    else if (!["panic_on_corruption", "restart_on_corruption", ...HARMLESS].includes(p))
      return `optional parameter ${p} is not allowed`;
  }
  return undefined;
}
