// The dm-verity hash device as veritysetup writes it, read before the mapping is created: its
// superblock (host-controlled bytes: a pure, bounded codec) and where the top block of the hash
// tree is. `veritysetup open` with a wrong root hash still creates the mapping ("Verity device
// detected corruption after activation", exit 0), so the agent checks that the released root hash
// is the hash of that top block itself: a wrong or substituted hash device, salt or algorithm is
// refused before anything is opened, and dm-verity checks every block below it on each read.
//
// Superblock (cryptsetup lib/verity/verity.c, struct verity_sb, 512 bytes, little-endian):
//   0 signature "verity\0\0" | 8 version u32 (1) | 12 hash_type u32 | 16 uuid[16] | 32 algorithm[32]
//   64 data_block_size u32 | 68 hash_block_size u32 | 72 data_blocks u64 | 80 salt_size u16
//   82 pad[6] | 88 salt[256] | 344 pad[168]
import { createHash } from "node:crypto";
import { ByteReader } from "../../platform/util/reader.ts";
import { ParseError, type ParseSite } from "../../platform/util/errors.ts";
import { HASH_HEX_CHARS, type VerityHashAlg, type VerityVolume } from "./resource.ts";

export const VERITY_SB_SIZE = 512;
const SIGNATURE = "verity\0\0";

export interface VerityParams {
  hashType: 0 | 1;
  algorithm: string;
  dataBlockSize: number;
  hashBlockSize: number;
  dataBlocks: bigint;
  /** Lowercase hex ("" for none). */
  salt: string;
}

const SITE: ParseSite = {
  structure: "dm-verity superblock",
  kind: "volume",
  hint: "the hash partition was not written by veritysetup format (or was replaced)",
};

const blockSize = (n: number) => n >= 512 && n <= 65536 && (n & (n - 1)) === 0;

export function parseVeritySuperblock(b: Uint8Array): VerityParams {
  const r = new ByteReader(b, SITE.structure);
  const fail = (field: string, off: number, problem: string): never => {
    throw new ParseError(SITE, field, off, problem);
  };
  if (b.length < VERITY_SB_SIZE) fail("superblock", 0, `${b.length} bytes, expected ${VERITY_SB_SIZE}`);
  if (new TextDecoder("latin1").decode(b.subarray(0, 8)) !== SIGNATURE) fail("signature", 0, 'not "verity"');
  const version = r.seek(8).u32le("version");
  if (version !== 1) fail("version", 8, `superblock version ${version} is not 1`);
  const hashType = r.u32le("hash_type");
  if (hashType !== 0 && hashType !== 1) fail("hash_type", 12, `hash type ${hashType} is not 0 or 1`);
  const algBytes = b.subarray(32, 64);
  const nul = algBytes.indexOf(0);
  const algorithm = new TextDecoder("latin1").decode(algBytes.subarray(0, nul < 0 ? 32 : nul));
  if (!/^[a-z0-9-]{1,31}$/.test(algorithm)) fail("algorithm", 32, "not a hash algorithm name");
  const dataBlockSize = r.seek(64).u32le("data_block_size");
  const hashBlockSize = r.u32le("hash_block_size");
  if (!blockSize(dataBlockSize)) fail("data_block_size", 64, `${dataBlockSize} is not a power of two 512..65536`);
  if (!blockSize(hashBlockSize)) fail("hash_block_size", 68, `${hashBlockSize} is not a power of two 512..65536`);
  const dataBlocks = r.u64le("data_blocks");
  if (dataBlocks === 0n || dataBlocks > 1n << 48n) fail("data_blocks", 72, `${dataBlocks} is not plausible`);
  const saltSize = r.u16le("salt_size");
  if (saltSize > 256) fail("salt_size", 80, `${saltSize} is over 256`);
  const salt = Buffer.from(b.subarray(88, 88 + saltSize)).toString("hex");
  return { hashType: hashType as 0 | 1, algorithm, dataBlockSize, hashBlockSize, dataBlocks, salt };
}

/** The parameters the mapping will use: the superblock's, or (superblock=false) the resource's. */
export function effectiveParams(v: VerityVolume, sb: VerityParams | undefined): VerityParams | string {
  const o = v.options;
  if (!sb) {
    if (o.dataBlocks === undefined) return "superblock=false needs data-blocks= to check the root hash";
    return {
      hashType: o.format ?? 1,
      algorithm: v.hashAlg,
      dataBlockSize: o.dataBlockSize ?? 4096,
      hashBlockSize: o.hashBlockSize ?? 4096,
      dataBlocks: BigInt(o.dataBlocks),
      salt: o.salt === "-" ? "" : (o.salt ?? ""),
    };
  }
  // what the resource states must be what the (host-controlled) superblock says
  if (sb.algorithm !== v.hashAlg) return `the hash device uses ${sb.algorithm}, the resource says ${v.hashAlg}`;
  if (o.format !== undefined && sb.hashType !== o.format) return `hash type ${sb.hashType} is not format=${o.format}`;
  if (o.dataBlockSize !== undefined && sb.dataBlockSize !== o.dataBlockSize)
    return `data block size ${sb.dataBlockSize} is not ${o.dataBlockSize}`;
  if (o.hashBlockSize !== undefined && sb.hashBlockSize !== o.hashBlockSize)
    return `hash block size ${sb.hashBlockSize} is not ${o.hashBlockSize}`;
  if (o.dataBlocks !== undefined && sb.dataBlocks !== BigInt(o.dataBlocks))
    return `${sb.dataBlocks} data blocks, not ${o.dataBlocks}`;
  if (o.salt !== undefined && sb.salt !== (o.salt === "-" ? "" : o.salt)) return "the salt is not the resource's";
  return sb;
}

/**
 * Where the block whose hash is the root hash lives: the top level of the hash tree (stored first,
 * right after the superblock's hash block) or, for a one-block volume, data block 0.
 */
export function rootBlockLocation(
  p: VerityParams,
  hashOffset: number,
  superblock: boolean,
): { device: "data" | "hash"; offset: number; size: number } {
  const digest = HASH_HEX_CHARS[p.algorithm as VerityHashAlg] / 2;
  const perBlockBits = Math.floor(Math.log2(p.hashBlockSize / digest));
  let levels = 0;
  while (perBlockBits * levels < 64 && (p.dataBlocks - 1n) >> BigInt(perBlockBits * levels) > 0n) levels++;
  if (levels === 0) return { device: "data", offset: 0, size: p.dataBlockSize };
  const start = superblock ? hashOffset + VERITY_SB_SIZE + p.hashBlockSize - 1 : hashOffset;
  const block = Math.floor(start / p.hashBlockSize);
  return { device: "hash", offset: block * p.hashBlockSize, size: p.hashBlockSize };
}

/** dm-verity's block digest: H(salt ‖ block) for hash type 1, H(block ‖ salt) for the Chrome OS type 0. */
export function blockDigest(p: VerityParams, block: Uint8Array): string {
  const salt = Buffer.from(p.salt, "hex");
  const h = createHash(p.algorithm);
  if (p.hashType === 1) h.update(salt).update(block);
  else h.update(block).update(salt);
  return h.digest("hex");
}
