// TPM 2.0 command framing (docs/spec/tpm.md §2): building a command and checking a response
// envelope. Pure: bytes in, bytes/structures out. Response bytes are host-controlled, so every
// length is checked and every failure is a ParseError naming field and offset, or a TpmError.
import { ByteReader, ByteWriter } from "../util/reader.ts";
import { CvmError } from "../util/errors.ts";
import { TPM_HEADER_SIZE, TPM_MAX_MESSAGE, TPM_RH, TPM_ST } from "./constants.ts";
import { TpmError } from "./rc.ts";

/** One password authorization (TPM_RS_PW); `password` is the entity's authValue (empty by default). */
export interface PasswordAuth {
  password?: Uint8Array;
}

export interface CommandSpec {
  /** Name for messages, e.g. "Quote". */
  name: string;
  code: number;
  handles?: number[];
  /** One password session per handle that needs authorization; none → TPM_ST_NO_SESSIONS. */
  auths?: PasswordAuth[];
  params?: Uint8Array;
}

export function buildCommand(spec: CommandSpec): Uint8Array {
  const body = new ByteWriter();
  for (const h of spec.handles ?? []) body.u32be(h);
  const auths = spec.auths ?? [];
  if (auths.length) {
    const area = new ByteWriter();
    for (const a of auths)
      area
        .u32be(TPM_RH.PW)
        .sized16be(new Uint8Array(0))
        .u8(0)
        .sized16be(a.password ?? new Uint8Array(0));
    const areaBytes = area.finish();
    body.u32be(areaBytes.length).bytes(areaBytes);
  }
  if (spec.params) body.bytes(spec.params);
  const bodyBytes = body.finish();
  const size = TPM_HEADER_SIZE + bodyBytes.length;
  if (size > TPM_MAX_MESSAGE)
    throw new CvmError("internal", `TPM2_${spec.name}: command of ${size} bytes exceeds ${TPM_MAX_MESSAGE}`);
  return new ByteWriter()
    .u16be(auths.length ? TPM_ST.SESSIONS : TPM_ST.NO_SESSIONS)
    .u32be(size)
    .u32be(spec.code)
    .bytes(bodyBytes)
    .finish();
}

export interface ResponseHeader {
  tag: number;
  size: number;
  rc: number;
}

/**
 * Length of a response frame from its first 10 bytes, for transports that must know when a
 * response is complete. Rejects wrong tags and sizes outside [10, TPM_MAX_MESSAGE] before any
 * body byte is trusted.
 */
export function responseFrameSize(header: Uint8Array, structure = "TPM response header"): number {
  return readFrameHeader(new ByteReader(header.subarray(0, TPM_HEADER_SIZE), structure)).size;
}

/** Check the 10-byte header against the bytes actually received (transports and codecs both use it). */
export function parseResponseHeader(rsp: Uint8Array, structure = "TPM response"): ResponseHeader {
  const r = new ByteReader(rsp, structure);
  const { tag, size } = readFrameHeader(r);
  if (size !== rsp.length) r.fail("responseSize", `header says ${size} bytes but ${rsp.length} were received`, 2);
  return { tag, size, rc: r.u32be("responseCode") };
}

function readFrameHeader(r: ByteReader): { tag: number; size: number } {
  const tag = r.u16be("tag");
  if (tag !== TPM_ST.NO_SESSIONS && tag !== TPM_ST.SESSIONS)
    r.fail("tag", `0x${tag.toString(16)} is neither TPM_ST_NO_SESSIONS nor TPM_ST_SESSIONS`, 0);
  const size = r.u32be("responseSize");
  if (size < TPM_HEADER_SIZE) r.fail("responseSize", `${size} is smaller than the 10-byte header`, 2);
  if (size > TPM_MAX_MESSAGE) r.fail("responseSize", `${size} exceeds the ${TPM_MAX_MESSAGE}-byte maximum`, 2);
  return { tag, size };
}

export interface ResponseShape {
  name: string;
  /** How many handles precede the parameters in a successful response (CreatePrimary: 1). */
  handles?: number;
  /** Whether the command was sent with an authorization area (then the response has one too). */
  sessions: boolean;
}

export interface ParsedResponse {
  handles: number[];
  /** Reader over exactly the response parameters; codecs must consume all of it (`end()`). */
  params: ByteReader;
}

/** Validate a response envelope; throws TpmError for rc != 0, ParseError for malformed bytes. */
export function parseResponse(rsp: Uint8Array, shape: ResponseShape): ParsedResponse {
  const structure = `TPM2_${shape.name} response`;
  const hdr = parseResponseHeader(rsp, structure);
  if (hdr.rc !== 0) throw new TpmError(shape.name, hdr.rc);
  const want = shape.sessions ? TPM_ST.SESSIONS : TPM_ST.NO_SESSIONS;
  const r = new ByteReader(rsp, structure, TPM_HEADER_SIZE);
  if (hdr.tag !== want)
    r.fail("tag", `0x${hdr.tag.toString(16)} where 0x${want.toString(16)} was expected for a successful response`, 0);
  const handles: number[] = [];
  for (let i = 0; i < (shape.handles ?? 0); i++) handles.push(r.u32be(`handle[${i}]`));
  if (!shape.sessions) return { handles, params: new ByteReader(rsp.subarray(r.offset), `${structure} parameters`) };
  const psAt = r.offset;
  const paramSize = r.u32be("parameterSize");
  if (paramSize > r.remaining) r.fail("parameterSize", `${paramSize} exceeds the ${r.remaining} bytes left`, psAt);
  const params = r.bytes(paramSize, "parameters");
  // Authorization area: one TPMS_AUTH_RESPONSE per session; we only ever send one password session.
  const authAt = r.offset;
  r.sized16be("authResponse.nonce", 64);
  r.u8("authResponse.sessionAttributes");
  r.sized16be("authResponse.hmac", 64);
  if (r.remaining !== 0)
    r.fail("authResponse", `${r.remaining} unexpected trailing byte(s) after the authorization area at ${authAt}`);
  return { handles, params: new ByteReader(params, `${structure} parameters`) };
}

// ---- shared structure codecs -------------------------------------------------------------------

/** TPMS_PCR_SELECTION list entry: a bank and the PCR indices selected in it. */
export interface PcrSelection {
  hash: number;
  pcrs: number[];
}

/** Selections carry at least 3 bitmap bytes (24 PCRs, PC Client) and at most this many. */
const MAX_SELECT_BYTES = 8;
const MAX_BANKS = 16;

export function writePcrSelection(w: ByteWriter, sel: PcrSelection[]): ByteWriter {
  w.u32be(sel.length);
  for (const s of sel) {
    const max = Math.max(23, ...s.pcrs);
    const bytes = new Uint8Array(Math.max(3, Math.ceil((max + 1) / 8)));
    for (const p of s.pcrs) {
      if (!Number.isInteger(p) || p < 0 || p >= MAX_SELECT_BYTES * 8)
        throw new CvmError("internal", `PCR index ${p} is outside 0..${MAX_SELECT_BYTES * 8 - 1}`);
      bytes[p >> 3]! |= 1 << (p & 7);
    }
    w.u16be(s.hash).u8(bytes.length).bytes(bytes);
  }
  return w;
}

export function readPcrSelection(r: ByteReader, field = "pcrSelection"): PcrSelection[] {
  const at = r.offset;
  const count = r.u32be(`${field}.count`);
  if (count > MAX_BANKS) r.fail(`${field}.count`, `${count} banks exceeds the limit of ${MAX_BANKS}`, at);
  const out: PcrSelection[] = [];
  for (let i = 0; i < count; i++) {
    const hash = r.u16be(`${field}[${i}].hash`);
    const szAt = r.offset;
    const n = r.u8(`${field}[${i}].sizeofSelect`);
    if (n > MAX_SELECT_BYTES) r.fail(`${field}[${i}].sizeofSelect`, `${n} exceeds ${MAX_SELECT_BYTES}`, szAt);
    const bitmap = r.bytes(n, `${field}[${i}].pcrSelect`);
    const pcrs: number[] = [];
    for (let b = 0; b < n * 8; b++) if (bitmap[b >> 3]! & (1 << (b & 7))) pcrs.push(b);
    out.push({ hash, pcrs });
  }
  return out;
}

/** TPML_DIGEST (PCR_Read output): at most 8 TPM2B_DIGESTs. */
export function readDigestList(r: ByteReader, field = "digests"): Uint8Array[] {
  const at = r.offset;
  const count = r.u32be(`${field}.count`);
  if (count > 8) r.fail(`${field}.count`, `${count} digests exceeds the TPML_DIGEST limit of 8`, at);
  const out: Uint8Array[] = [];
  for (let i = 0; i < count; i++) out.push(r.sized16be(`${field}[${i}]`, 64));
  return out;
}

/** TPM2B of a nested structure: returns a reader over exactly `size` bytes. */
export function readSized(r: ByteReader, field: string, max: number): ByteReader {
  const start = r.offset;
  const body = r.sized16be(field, max);
  return new ByteReader(body, `${r.structure} ${field} (at ${start + 2})`);
}
