// LUKS2 metadata as typed values: the data segment, keyslots, digests and config of a parsed header
// (luks2-header.ts), checked for shape and arithmetic only (no policy). The JSON is host input and
// cryptsetup trusts it, so every member the agent does not know is refused, every number is
// bounded, and every area must lie where LUKS2 puts it (cryptsetup docs/on-disk-format-luks2.pdf §3).
// Which ciphers, sizes and hashes are acceptable is decided by agent/unlock/header-policy.ts.
import { ParseError } from "../util/errors.ts";
import { LUKS2_BINARY_HEADER_SIZE, type Luks2Header } from "./luks2-header.ts";

/** LUKS2 keyslots areas are at most 128 MiB (cryptsetup LUKS2_MAX_KEYSLOTS_SIZE). */
export const LUKS2_MAX_KEYSLOTS_SIZE = 128 * 1024 * 1024;
const U64_DECIMAL = /^(0|[1-9][0-9]{0,19})$/;
const MAX_U63 = 2n ** 63n - 1n;
const MAX_NAME = 64;
const MAX_B64 = 512;
const B64 = /^[A-Za-z0-9+/]*={0,2}$/;

export interface Luks2Segment {
  id: string;
  type: string;
  /** Byte offset of the data on the data device. */
  offset: bigint;
  /** Bytes, or "dynamic" (up to the end of the device). */
  size: bigint | "dynamic";
  ivTweak: bigint;
  encryption: string;
  sectorSize: number;
  integrity: boolean;
  flags: string[];
}

export interface Luks2Keyslot {
  id: string;
  type: string;
  /** Volume key size in bytes. */
  keySize: number;
  area: { type: string; offset: bigint; size: bigint; encryption: string; keySize: number };
  kdf: { type: string; hash?: string; iterations?: number; time?: number; memory?: number; cpus?: number };
  af: { type: string; stripes: number; hash: string };
}

export interface Luks2Digest {
  id: string;
  type: string;
  keyslots: string[];
  segments: string[];
  hash: string;
  iterations: number;
}

export interface Luks2Layout {
  hdrSize: number;
  keyslotsSize: bigint;
  /** Bytes from the start of the device that hold both headers and the keyslots area. */
  metadataBytes: bigint;
  segments: Luks2Segment[];
  keyslots: Luks2Keyslot[];
  digests: Luks2Digest[];
  configFlags: string[];
  requirements: string[];
}

const STRUCT = "LUKS2 JSON metadata";

function fail(field: string, problem: string): never {
  throw new ParseError(STRUCT, field, LUKS2_BINARY_HEADER_SIZE, problem);
}

type Obj = Record<string, unknown>;

function onlyMembers(o: Obj, path: string, allowed: string[]): void {
  for (const k of Object.keys(o)) if (!allowed.includes(k)) fail(`${path}.${k}`, "unknown member");
}

function object(v: unknown, path: string): Obj {
  if (typeof v !== "object" || v === null || Array.isArray(v)) fail(path, "missing or not an object");
  return v as Obj;
}

function name(v: unknown, path: string): string {
  if (typeof v !== "string" || v.length === 0 || v.length > MAX_NAME || !/^[\x21-\x7e]+$/.test(v))
    fail(path, `must be a printable string of 1..${MAX_NAME} characters`);
  return v;
}

function int(v: unknown, path: string, min: number, max: number): number {
  if (typeof v !== "number" || !Number.isInteger(v) || v < min || v > max)
    fail(path, `must be an integer in ${min}..${max}, got ${JSON.stringify(v)}`);
  return v;
}

function u64(v: unknown, path: string): bigint {
  if (typeof v !== "string" || !U64_DECIMAL.test(v) || BigInt(v) > MAX_U63)
    fail(path, `must be a decimal string below 2^63, got ${JSON.stringify(v)}`);
  return BigInt(v);
}

function base64(v: unknown, path: string): void {
  if (typeof v !== "string" || v.length > MAX_B64 || !B64.test(v))
    fail(path, `must be base64 of at most ${MAX_B64} characters`);
}

function names(v: unknown, path: string, max: number): string[] {
  if (!Array.isArray(v) || v.length > max) fail(path, `must be an array of at most ${max} names`);
  return v.map((x, i) => name(x, `${path}[${i}]`));
}

function segment(id: string, s: Obj, metadataBytes: bigint): Luks2Segment {
  const p = `segments.${id}`;
  onlyMembers(s, p, ["type", "offset", "size", "iv_tweak", "encryption", "sector_size", "integrity", "flags"]);
  const sectorSize = int(s.sector_size, `${p}.sector_size`, 512, 4096);
  if ((sectorSize & (sectorSize - 1)) !== 0) fail(`${p}.sector_size`, `${sectorSize} is not a power of two`);
  const offset = u64(s.offset, `${p}.offset`);
  if (offset % BigInt(sectorSize) !== 0n) fail(`${p}.offset`, `${offset} is not a multiple of the sector size`);
  if (offset < metadataBytes)
    fail(`${p}.offset`, `${offset} lies inside the header and keyslots area (${metadataBytes} bytes)`);
  let size: bigint | "dynamic" = "dynamic";
  if (s.size !== "dynamic") {
    size = u64(s.size, `${p}.size`);
    if (size === 0n || size % BigInt(sectorSize) !== 0n || offset + size > MAX_U63)
      fail(`${p}.size`, `${size} must be "dynamic" or a positive multiple of the sector size`);
  }
  return {
    id,
    type: name(s.type, `${p}.type`),
    offset,
    size,
    ivTweak: u64(s.iv_tweak, `${p}.iv_tweak`),
    encryption: name(s.encryption, `${p}.encryption`),
    sectorSize,
    integrity: s.integrity !== undefined,
    flags: s.flags === undefined ? [] : names(s.flags, `${p}.flags`, 16),
  };
}

function keyslot(id: string, k: Obj, hdrSize: number, metadataBytes: bigint): Luks2Keyslot {
  const p = `keyslots.${id}`;
  onlyMembers(k, p, ["type", "key_size", "area", "kdf", "af", "priority"]);
  if (k.priority !== undefined) int(k.priority, `${p}.priority`, 0, 2);
  const area = object(k.area, `${p}.area`);
  onlyMembers(area, `${p}.area`, ["type", "offset", "size", "encryption", "key_size"]);
  const areaOffset = u64(area.offset, `${p}.area.offset`);
  const areaSize = u64(area.size, `${p}.area.size`);
  if (areaOffset < BigInt(2 * hdrSize) || areaOffset + areaSize > metadataBytes || areaOffset % 4096n !== 0n)
    fail(`${p}.area`, `offset ${areaOffset} size ${areaSize} is not inside the keyslots area, 4096-aligned`);
  const kdf = object(k.kdf, `${p}.kdf`);
  onlyMembers(kdf, `${p}.kdf`, ["type", "hash", "iterations", "salt", "time", "memory", "cpus"]);
  base64(kdf.salt, `${p}.kdf.salt`);
  const af = object(k.af, `${p}.af`);
  onlyMembers(af, `${p}.af`, ["type", "stripes", "hash"]);
  const opt = (v: unknown, f: string, max: number) => (v === undefined ? undefined : int(v, `${p}.kdf.${f}`, 1, max));
  return {
    id,
    type: name(k.type, `${p}.type`),
    keySize: int(k.key_size, `${p}.key_size`, 1, 512),
    area: {
      type: name(area.type, `${p}.area.type`),
      offset: areaOffset,
      size: areaSize,
      encryption: name(area.encryption, `${p}.area.encryption`),
      keySize: int(area.key_size, `${p}.area.key_size`, 1, 512),
    },
    kdf: {
      type: name(kdf.type, `${p}.kdf.type`),
      ...(kdf.hash !== undefined ? { hash: name(kdf.hash, `${p}.kdf.hash`) } : {}),
      ...(kdf.iterations !== undefined ? { iterations: opt(kdf.iterations, "iterations", 0xffffffff)! } : {}),
      ...(kdf.time !== undefined ? { time: opt(kdf.time, "time", 0xffffffff)! } : {}),
      ...(kdf.memory !== undefined ? { memory: opt(kdf.memory, "memory", 0xffffffff)! } : {}),
      ...(kdf.cpus !== undefined ? { cpus: opt(kdf.cpus, "cpus", 0xffffffff)! } : {}),
    },
    af: {
      type: name(af.type, `${p}.af.type`),
      stripes: int(af.stripes, `${p}.af.stripes`, 1, 0xffffffff),
      hash: name(af.hash, `${p}.af.hash`),
    },
  };
}

function digest(id: string, d: Obj): Luks2Digest {
  const p = `digests.${id}`;
  onlyMembers(d, p, ["type", "keyslots", "segments", "hash", "iterations", "salt", "digest"]);
  base64(d.salt, `${p}.salt`);
  base64(d.digest, `${p}.digest`);
  return {
    id,
    type: name(d.type, `${p}.type`),
    // luks2-header.ts already checked these are arrays of decimal ids.
    keyslots: d.keyslots as string[],
    segments: d.segments as string[],
    hash: name(d.hash, `${p}.hash`),
    iterations: int(d.iterations, `${p}.iterations`, 1, 0xffffffff),
  };
}

/** The typed layout of a header whose checksum and JSON framing luks2-header.ts verified. */
export function parseLuks2Layout(h: Luks2Header): Luks2Layout {
  const config = h.json.config;
  onlyMembers(config, "config", ["json_size", "keyslots_size", "flags", "requirements"]);
  const keyslotsSize = u64(config.keyslots_size, "config.keyslots_size");
  if (keyslotsSize % 4096n !== 0n || keyslotsSize > BigInt(LUKS2_MAX_KEYSLOTS_SIZE))
    fail("config.keyslots_size", `${keyslotsSize} must be a multiple of 4096 of at most ${LUKS2_MAX_KEYSLOTS_SIZE}`);
  const metadataBytes = BigInt(2 * h.hdrSize) + keyslotsSize;
  let requirements: string[] = [];
  if (config.requirements !== undefined) {
    const req = object(config.requirements, "config.requirements");
    onlyMembers(req, "config.requirements", ["mandatory"]);
    requirements = req.mandatory === undefined ? [] : names(req.mandatory, "config.requirements.mandatory", 16);
  }
  const keyslots = Object.entries(h.json.keyslots).map(([id, k]) => keyslot(id, k, h.hdrSize, metadataBytes));
  // cryptsetup refuses overlapping areas too; for us an overlap would mean two reads of the same bytes.
  const byOffset = [...keyslots].sort((a, b) => (a.area.offset < b.area.offset ? -1 : 1));
  for (let i = 1; i < byOffset.length; i++)
    if (byOffset[i - 1]!.area.offset + byOffset[i - 1]!.area.size > byOffset[i]!.area.offset)
      fail(`keyslots.${byOffset[i]!.id}.area`, `overlaps the area of keyslot ${byOffset[i - 1]!.id}`);
  return {
    hdrSize: h.hdrSize,
    keyslotsSize,
    metadataBytes,
    segments: Object.entries(h.json.segments).map(([id, s]) => segment(id, s, metadataBytes)),
    keyslots,
    digests: Object.entries(h.json.digests).map(([id, d]) => digest(id, d)),
    configFlags: config.flags === undefined ? [] : names(config.flags, "config.flags", 16),
    requirements,
  };
}

/** The digest that covers a segment, and the volume key size (bytes) its keyslots agree on. */
export function segmentKey(layout: Luks2Layout, seg: Luks2Segment): { digest: Luks2Digest; keyBytes: number } {
  const covering = layout.digests.filter((d) => d.segments.includes(seg.id));
  if (covering.length !== 1)
    fail(`segments.${seg.id}`, `is covered by ${covering.length} digests; LUKS2 needs exactly one`);
  const digest = covering[0]!;
  const sizes = new Set(layout.keyslots.filter((k) => digest.keyslots.includes(k.id)).map((k) => k.keySize));
  if (sizes.size !== 1)
    fail(
      `digests.${digest.id}.keyslots`,
      sizes.size === 0
        ? "no keyslot holds the volume key"
        : `keyslots disagree on the volume key size (${[...sizes].join(", ")} bytes)`,
    );
  return { digest, keyBytes: [...sizes][0]! };
}
