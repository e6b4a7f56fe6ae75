// LUKS2 on-disk header: pure codec (bytes -> structure). The header is host-controlled, so every
// field is bounded and checked before use; nothing here trusts cryptsetup to have written it.
//
// Binary header (4096 bytes, big-endian; cryptsetup docs/on-disk-format-luks2.pdf §2):
//   0 magic[6] "LUKS\xba\xbe" (primary) / "SKUL\xba\xbe" (secondary) | 6 version u16 = 2
//   8 hdr_size u64 (binary + JSON area) | 16 seqid u64 | 24 label[48] | 72 checksum_alg[32]
//   104 salt[64] | 168 uuid[40] | 208 subsystem[48] | 256 hdr_offset u64 | 264 padding[184]
//   448 csum[64] | 512 padding[3584]
// followed by the JSON area (hdr_size - 4096 bytes, NUL-terminated JSON text).
// The checksum is SHA-256 over all hdr_size bytes with the csum field zeroed.
import { sha256 } from "@noble/hashes/sha2.js";
import { bytesEqual, hex } from "../util/bytes.ts";
import { ParseError } from "../util/errors.ts";
import { ByteReader } from "../util/reader.ts";

export const LUKS2_BINARY_HEADER_SIZE = 4096;
/** hdr_size values cryptsetup accepts: 16 KiB .. 4 MiB, powers of two. */
export const LUKS2_HDR_SIZES: readonly number[] = [
  0x4000, 0x8000, 0x10000, 0x20000, 0x40000, 0x80000, 0x100000, 0x200000, 0x400000,
];
export const LUKS2_MAX_HDR_SIZE = 0x400000;
const MAGIC_PRIMARY = [0x4c, 0x55, 0x4b, 0x53, 0xba, 0xbe];
const MAGIC_SECONDARY = [0x53, 0x4b, 0x55, 0x4c, 0xba, 0xbe];
const CSUM_OFFSET = 448;
const CSUM_LEN = 64;
const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
const ID_RE = /^(0|[1-9][0-9]{0,8})$/;
const STRUCT = "LUKS2 header";

export interface Luks2Token {
  type: string;
  keyslots: string[];
  /** The whole token object as stored (host-controlled: validate before use). */
  raw: Record<string, unknown>;
}

export interface Luks2Header {
  which: "primary" | "secondary";
  hdrSize: number;
  seqid: bigint;
  label: string;
  subsystem: string;
  /** Lower-case canonical UUID. */
  uuid: string;
  checksum: Uint8Array;
  /** JSON metadata text exactly as stored (without the terminating NUL). */
  jsonText: string;
  json: Luks2Json;
  tokens: Map<string, Luks2Token>;
}

export interface Luks2Json {
  keyslots: Record<string, Record<string, unknown>>;
  tokens: Record<string, Record<string, unknown>>;
  segments: Record<string, Record<string, unknown>>;
  digests: Record<string, Record<string, unknown>>;
  config: Record<string, unknown>;
}

/** Read the fixed part far enough to learn hdr_size (the caller then reads that many bytes). */
export function peekHeaderSize(first4k: Uint8Array, which: "primary" | "secondary" = "primary"): number {
  const r = new ByteReader(first4k, STRUCT);
  checkMagic(r, which);
  const version = r.u16be("version");
  if (version !== 2) r.fail("version", `is ${version}; only LUKS2 is supported`, 6);
  return readHdrSize(r);
}

function checkMagic(r: ByteReader, which: "primary" | "secondary"): void {
  const magic = r.bytes(6, "magic");
  const want = which === "primary" ? MAGIC_PRIMARY : MAGIC_SECONDARY;
  if (!magic.every((b, i) => b === want[i])) r.fail("magic", `not a LUKS2 ${which} header (got ${hex(magic)})`, 0);
}

function readHdrSize(r: ByteReader): number {
  const at = r.offset;
  const v = r.u64be("hdr_size");
  if (v > BigInt(LUKS2_MAX_HDR_SIZE) || !LUKS2_HDR_SIZES.includes(Number(v)))
    r.fail("hdr_size", `${v} is not one of the sizes LUKS2 allows (16 KiB .. 4 MiB, power of two)`, at);
  return Number(v);
}

/** NUL-terminated text field: must contain a NUL, no control characters, valid UTF-8. */
function cString(r: ByteReader, len: number, field: string): string {
  const at = r.offset;
  const raw = r.bytes(len, field);
  const nul = raw.indexOf(0);
  if (nul === -1) r.fail(field, "is not NUL-terminated", at);
  const body = raw.subarray(0, nul);
  let s: string;
  try {
    s = new TextDecoder("utf-8", { fatal: true }).decode(body);
  } catch {
    r.fail(field, "is not valid UTF-8", at);
  }
  if (/[\u0000-\u001f\u007f]/.test(s)) r.fail(field, "contains control characters", at);
  return s;
}

/** Parse and verify one header copy. `buf` must hold exactly hdr_size bytes starting at the magic. */
export function parseLuks2Header(buf: Uint8Array, which: "primary" | "secondary" = "primary"): Luks2Header {
  if (buf.length < LUKS2_BINARY_HEADER_SIZE)
    throw new ParseError(STRUCT, "binary header", 0, `needs ${LUKS2_BINARY_HEADER_SIZE} bytes, got ${buf.length}`);
  const r = new ByteReader(buf, STRUCT);
  checkMagic(r, which);
  const version = r.u16be("version");
  if (version !== 2) r.fail("version", `is ${version}; only LUKS2 is supported`, 6);
  const hdrSize = readHdrSize(r);
  if (buf.length !== hdrSize) r.fail("hdr_size", `says ${hdrSize} bytes but ${buf.length} were supplied`, 8);
  const seqid = r.u64be("seqid");
  const label = cString(r, 48, "label");
  const csumAlg = cString(r, 32, "checksum_alg");
  if (csumAlg !== "sha256") r.fail("checksum_alg", `${JSON.stringify(csumAlg)} is not supported (only sha256)`, 72);
  r.skip(64, "salt");
  const uuidRaw = cString(r, 40, "uuid");
  const uuid = uuidRaw.toLowerCase();
  if (!UUID_RE.test(uuid)) r.fail("uuid", `${JSON.stringify(uuidRaw)} is not a UUID`, 168);
  const subsystem = cString(r, 48, "subsystem");
  const hdrOffAt = r.offset;
  const hdrOffset = r.u64be("hdr_offset");
  const wantOffset = which === "primary" ? 0n : BigInt(hdrSize);
  if (hdrOffset !== wantOffset)
    r.fail("hdr_offset", `is ${hdrOffset}, expected ${wantOffset} for the ${which} header`, hdrOffAt);
  const checksum = buf.slice(CSUM_OFFSET, CSUM_OFFSET + CSUM_LEN);
  const copy = buf.slice();
  copy.fill(0, CSUM_OFFSET, CSUM_OFFSET + CSUM_LEN);
  const computed = sha256(copy);
  if (!bytesEqual(computed, checksum.subarray(0, 32)) || checksum.subarray(32).some((b) => b !== 0))
    r.fail("csum", "SHA-256 checksum does not match the header (corrupt or tampered)", CSUM_OFFSET);

  const area = buf.subarray(LUKS2_BINARY_HEADER_SIZE);
  const nul = area.indexOf(0);
  if (nul === -1)
    throw new ParseError(STRUCT, "json area", LUKS2_BINARY_HEADER_SIZE, "JSON text is not NUL-terminated");
  if (nul === 0) throw new ParseError(STRUCT, "json area", LUKS2_BINARY_HEADER_SIZE, "JSON text is empty");
  let jsonText: string;
  try {
    jsonText = new TextDecoder("utf-8", { fatal: true }).decode(area.subarray(0, nul));
  } catch {
    throw new ParseError(STRUCT, "json area", LUKS2_BINARY_HEADER_SIZE, "JSON text is not valid UTF-8");
  }
  const json = parseLuks2Json(jsonText, hdrSize);
  return { which, hdrSize, seqid, label, subsystem, uuid, checksum, jsonText, json, tokens: tokensOf(json) };
}

function jsonFail(field: string, problem: string): never {
  throw new ParseError("LUKS2 JSON metadata", field, LUKS2_BINARY_HEADER_SIZE, problem);
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/** Top-level sections are required objects whose members are objects keyed by decimal ids. */
function idMap(top: Record<string, unknown>, name: string): Record<string, Record<string, unknown>> {
  const v = top[name];
  if (!isPlainObject(v)) jsonFail(name, "missing or not an object");
  for (const [id, member] of Object.entries(v)) {
    if (!ID_RE.test(id)) jsonFail(`${name}.${id}`, "id is not a decimal number");
    if (!isPlainObject(member)) jsonFail(`${name}.${id}`, "is not an object");
    if (typeof member.type !== "string") jsonFail(`${name}.${id}.type`, "missing or not a string");
  }
  return v as Record<string, Record<string, unknown>>;
}

export function parseLuks2Json(text: string, hdrSize: number): Luks2Json {
  let top: unknown;
  try {
    top = JSON.parse(text);
  } catch (e) {
    jsonFail("json", `not valid JSON (${(e as Error).message})`);
  }
  if (!isPlainObject(top)) jsonFail("json", "top level is not an object");
  const known = ["keyslots", "tokens", "segments", "digests", "config"];
  for (const k of Object.keys(top)) if (!known.includes(k)) jsonFail(k, "unknown top-level section");
  const config = top.config;
  if (!isPlainObject(config)) jsonFail("config", "missing or not an object");
  const jsonSize = config.json_size;
  if (typeof jsonSize !== "string" || jsonSize !== String(hdrSize - LUKS2_BINARY_HEADER_SIZE))
    jsonFail(
      "config.json_size",
      `is ${JSON.stringify(jsonSize)}, expected "${hdrSize - LUKS2_BINARY_HEADER_SIZE}" (hdr_size - 4096)`,
    );
  const json: Luks2Json = {
    keyslots: idMap(top, "keyslots"),
    tokens: idMap(top, "tokens"),
    segments: idMap(top, "segments"),
    digests: idMap(top, "digests"),
    config,
  };
  if (Object.keys(json.segments).length === 0) jsonFail("segments", "no data segment");
  for (const [id, d] of Object.entries(json.digests)) {
    for (const list of ["keyslots", "segments"] as const)
      if (!Array.isArray(d[list]) || !(d[list] as unknown[]).every((x) => typeof x === "string" && ID_RE.test(x)))
        jsonFail(`digests.${id}.${list}`, "is not an array of ids");
  }
  return json;
}

function tokensOf(json: Luks2Json): Map<string, Luks2Token> {
  const out = new Map<string, Luks2Token>();
  for (const [id, t] of Object.entries(json.tokens)) {
    const ks = t.keyslots;
    if (!Array.isArray(ks) || !ks.every((x) => typeof x === "string" && ID_RE.test(x)))
      jsonFail(`tokens.${id}.keyslots`, "is not an array of keyslot ids");
    out.set(id, { type: t.type as string, keyslots: ks as string[], raw: t });
  }
  return out;
}

/**
 * Both copies must agree: cryptsetup silently repairs a damaged copy from the other one, so a
 * host could present different identities to us and to cryptsetup. We refuse instead.
 */
export function checkHeaderPair(primary: Luks2Header, secondary: Luks2Header | undefined): void {
  if (!secondary) return;
  if (secondary.uuid !== primary.uuid)
    throw new ParseError(
      STRUCT,
      "uuid",
      168,
      `primary (${primary.uuid}) and secondary (${secondary.uuid}) headers disagree`,
    );
  if (secondary.seqid !== primary.seqid)
    throw new ParseError(
      STRUCT,
      "seqid",
      16,
      `primary (${primary.seqid}) and secondary (${secondary.seqid}) headers disagree; run 'cryptsetup repair' from a trusted environment`,
    );
  if (secondary.jsonText !== primary.jsonText)
    throw new ParseError(STRUCT, "json area", LUKS2_BINARY_HEADER_SIZE, "primary and secondary JSON metadata differ");
}
