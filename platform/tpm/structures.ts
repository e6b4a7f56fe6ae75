// Codecs for the TPM structures that carry keys, quotes and NV metadata (TPM 2.0 Part 2).
// Decoders take host-controlled bytes and bound every size; encoders are used for templates.
import { ByteReader, ByteWriter } from "../util/reader.ts";
import { DIGEST_SIZE, TPM_ALG, TPM_GENERATED_VALUE, TPM_ST } from "./constants.ts";
import { readPcrSelection, type PcrSelection } from "./marshal.ts";

// ---- TPMT_PUBLIC -------------------------------------------------------------------------------

export interface SymDef {
  alg: number;
  keyBits?: number;
  mode?: number;
}
export interface Scheme {
  scheme: number;
  hashAlg?: number;
  /** ECDAA only. */
  count?: number;
}

export interface RsaParams {
  symmetric: SymDef;
  scheme: Scheme;
  keyBits: number;
  /** 0 means the default 65537. */
  exponent: number;
}
export interface EccParams {
  symmetric: SymDef;
  scheme: Scheme;
  curve: number;
  kdf: Scheme;
}

export type TpmPublic =
  | {
      type: typeof TPM_ALG.RSA;
      nameAlg: number;
      attributes: number;
      authPolicy: Uint8Array;
      rsa: RsaParams;
      unique: Uint8Array;
    }
  | {
      type: typeof TPM_ALG.ECC;
      nameAlg: number;
      attributes: number;
      authPolicy: Uint8Array;
      ecc: EccParams;
      x: Uint8Array;
      y: Uint8Array;
    }
  | {
      type: typeof TPM_ALG.KEYEDHASH | typeof TPM_ALG.SYMCIPHER;
      nameAlg: number;
      attributes: number;
      authPolicy: Uint8Array;
      unique: Uint8Array;
      params: Uint8Array;
    };

function readSymDef(r: ByteReader, field: string): SymDef {
  const alg = r.u16be(`${field}.algorithm`);
  if (alg === TPM_ALG.NULL) return { alg };
  if (alg === TPM_ALG.XOR) return { alg, keyBits: r.u16be(`${field}.hashAlg`) };
  return { alg, keyBits: r.u16be(`${field}.keyBits`), mode: r.u16be(`${field}.mode`) };
}

function writeSymDef(w: ByteWriter, s: SymDef): void {
  w.u16be(s.alg);
  if (s.alg === TPM_ALG.NULL) return;
  w.u16be(s.keyBits ?? 0);
  if (s.alg !== TPM_ALG.XOR) w.u16be(s.mode ?? TPM_ALG.NULL);
}

function readScheme(r: ByteReader, field: string): Scheme {
  const scheme = r.u16be(`${field}.scheme`);
  if (scheme === TPM_ALG.NULL) return { scheme };
  const hashAlg = r.u16be(`${field}.hashAlg`);
  if (scheme === TPM_ALG.ECDAA) return { scheme, hashAlg, count: r.u16be(`${field}.count`) };
  return { scheme, hashAlg };
}

function writeScheme(w: ByteWriter, s: Scheme): void {
  w.u16be(s.scheme);
  if (s.scheme === TPM_ALG.NULL) return;
  w.u16be(s.hashAlg ?? TPM_ALG.NULL);
  if (s.scheme === TPM_ALG.ECDAA) w.u16be(s.count ?? 0);
}

/** TPMT_PUBLIC from a reader positioned at its first byte. */
export function readPublic(r: ByteReader): TpmPublic {
  const typeAt = r.offset;
  const type = r.u16be("type");
  const nameAlg = r.u16be("nameAlg");
  const attributes = r.u32be("objectAttributes");
  const authPolicy = r.sized16be("authPolicy", 64);
  switch (type) {
    case TPM_ALG.RSA: {
      const symmetric = readSymDef(r, "parameters.symmetric");
      const scheme = readScheme(r, "parameters.scheme");
      const keyBits = r.u16be("parameters.keyBits");
      const exponent = r.u32be("parameters.exponent");
      const unique = r.sized16be("unique.rsa", 512);
      return { type, nameAlg, attributes, authPolicy, rsa: { symmetric, scheme, keyBits, exponent }, unique };
    }
    case TPM_ALG.ECC: {
      const symmetric = readSymDef(r, "parameters.symmetric");
      const scheme = readScheme(r, "parameters.scheme");
      const curve = r.u16be("parameters.curveID");
      const kdf = readScheme(r, "parameters.kdf");
      const x = r.sized16be("unique.ecc.x", 128);
      const y = r.sized16be("unique.ecc.y", 128);
      return { type, nameAlg, attributes, authPolicy, ecc: { symmetric, scheme, curve, kdf }, x, y };
    }
    case TPM_ALG.KEYEDHASH: {
      const start = r.offset;
      const scheme = r.u16be("parameters.scheme");
      if (scheme === TPM_ALG.HMAC) r.u16be("parameters.hashAlg");
      else if (scheme === TPM_ALG.XOR) (r.u16be("parameters.hashAlg"), r.u16be("parameters.kdf"));
      else if (scheme !== TPM_ALG.NULL)
        r.fail("parameters.scheme", `unknown keyedhash scheme 0x${scheme.toString(16)}`, start);
      const params = r.buf.slice(start, r.offset);
      return { type, nameAlg, attributes, authPolicy, params, unique: r.sized16be("unique.keyedHash", 64) };
    }
    case TPM_ALG.SYMCIPHER: {
      const start = r.offset;
      readSymDef(r, "parameters.sym");
      const params = r.buf.slice(start, r.offset);
      return { type, nameAlg, attributes, authPolicy, params, unique: r.sized16be("unique.sym", 64) };
    }
    default:
      return r.fail("type", `unsupported object type 0x${type.toString(16)}`, typeAt);
  }
}

/** Decode a complete TPMT_PUBLIC (no size prefix); trailing bytes are an error. */
export function decodePublic(bytes: Uint8Array): TpmPublic {
  const r = new ByteReader(bytes, "TPMT_PUBLIC");
  const p = readPublic(r);
  r.end();
  return p;
}

/** TPMT_PUBLIC bytes for RSA and ECC keys (templates). */
export function encodePublic(p: TpmPublic): Uint8Array {
  const w = new ByteWriter().u16be(p.type).u16be(p.nameAlg).u32be(p.attributes).sized16be(p.authPolicy);
  if (p.type === TPM_ALG.RSA) {
    writeSymDef(w, p.rsa.symmetric);
    writeScheme(w, p.rsa.scheme);
    w.u16be(p.rsa.keyBits).u32be(p.rsa.exponent).sized16be(p.unique);
  } else if (p.type === TPM_ALG.ECC) {
    writeSymDef(w, p.ecc.symmetric);
    writeScheme(w, p.ecc.scheme);
    w.u16be(p.ecc.curve);
    writeScheme(w, p.ecc.kdf);
    w.sized16be(p.x).sized16be(p.y);
  } else {
    w.bytes(p.params).sized16be(p.unique);
  }
  return w.finish();
}

// ---- TPMT_SIGNATURE ----------------------------------------------------------------------------

export type TpmSignature =
  | { sigAlg: typeof TPM_ALG.RSASSA | typeof TPM_ALG.RSAPSS; hashAlg: number; sig: Uint8Array }
  | {
      sigAlg: typeof TPM_ALG.ECDSA | typeof TPM_ALG.ECDAA | typeof TPM_ALG.SM2 | typeof TPM_ALG.ECSCHNORR;
      hashAlg: number;
      r: Uint8Array;
      s: Uint8Array;
    }
  | { sigAlg: typeof TPM_ALG.HMAC; hashAlg: number; digest: Uint8Array }
  | { sigAlg: typeof TPM_ALG.NULL };

export function readSignature(r: ByteReader): TpmSignature {
  const at = r.offset;
  const sigAlg = r.u16be("sigAlg");
  switch (sigAlg) {
    case TPM_ALG.NULL:
      return { sigAlg };
    case TPM_ALG.RSASSA:
    case TPM_ALG.RSAPSS:
      return { sigAlg, hashAlg: r.u16be("hash"), sig: r.sized16be("sig", 512) };
    case TPM_ALG.ECDSA:
    case TPM_ALG.ECDAA:
    case TPM_ALG.SM2:
    case TPM_ALG.ECSCHNORR:
      return { sigAlg, hashAlg: r.u16be("hash"), r: r.sized16be("signatureR", 128), s: r.sized16be("signatureS", 128) };
    case TPM_ALG.HMAC: {
      const hashAt = r.offset;
      const hashAlg = r.u16be("hmac.hashAlg");
      const n = DIGEST_SIZE[hashAlg];
      if (n === undefined) return r.fail("hmac.hashAlg", `unknown hash 0x${hashAlg.toString(16)}`, hashAt);
      return { sigAlg, hashAlg, digest: r.bytes(n, "hmac.digest") };
    }
    default:
      return r.fail("sigAlg", `unsupported signature algorithm 0x${sigAlg.toString(16)}`, at);
  }
}

export function decodeSignature(bytes: Uint8Array): TpmSignature {
  const r = new ByteReader(bytes, "TPMT_SIGNATURE");
  const s = readSignature(r);
  r.end();
  return s;
}

// ---- TPMS_ATTEST (quote) -----------------------------------------------------------------------

export interface QuoteAttest {
  magic: number;
  type: number;
  qualifiedSigner: Uint8Array;
  extraData: Uint8Array;
  clock: bigint;
  resetCount: number;
  restartCount: number;
  safe: boolean;
  firmwareVersion: bigint;
  pcrSelect: PcrSelection[];
  pcrDigest: Uint8Array;
}

/** TPMS_ATTEST of type TPM_ST_ATTEST_QUOTE (no TPM2B size prefix). */
export function decodeQuoteAttest(bytes: Uint8Array): QuoteAttest {
  const r = new ByteReader(bytes, "TPMS_ATTEST");
  const magic = r.u32be("magic");
  if (magic !== TPM_GENERATED_VALUE)
    r.fail("magic", `0x${magic.toString(16)} is not TPM_GENERATED_VALUE 0xff544347`, 0);
  const type = r.u16be("type");
  if (type !== TPM_ST.ATTEST_QUOTE) r.fail("type", `0x${type.toString(16)} is not TPM_ST_ATTEST_QUOTE 0x8018`, 4);
  const qualifiedSigner = r.sized16be("qualifiedSigner", 2 + 64);
  const extraData = r.sized16be("extraData", 64);
  const clock = r.u64be("clockInfo.clock");
  const resetCount = r.u32be("clockInfo.resetCount");
  const restartCount = r.u32be("clockInfo.restartCount");
  const safeAt = r.offset;
  const safeByte = r.u8("clockInfo.safe");
  if (safeByte > 1) r.fail("clockInfo.safe", `TPMI_YES_NO must be 0 or 1, got ${safeByte}`, safeAt);
  const firmwareVersion = r.u64be("firmwareVersion");
  const pcrSelect = readPcrSelection(r, "attested.quote.pcrSelect");
  const pcrDigest = r.sized16be("attested.quote.pcrDigest", 64);
  r.end();
  return {
    magic,
    type,
    qualifiedSigner,
    extraData,
    clock,
    resetCount,
    restartCount,
    safe: safeByte === 1,
    firmwareVersion,
    pcrSelect,
    pcrDigest,
  };
}

// ---- TPMS_NV_PUBLIC ----------------------------------------------------------------------------

export interface NvPublic {
  nvIndex: number;
  nameAlg: number;
  attributes: number;
  authPolicy: Uint8Array;
  dataSize: number;
}

export function readNvPublic(r: ByteReader): NvPublic {
  return {
    nvIndex: r.u32be("nvIndex"),
    nameAlg: r.u16be("nameAlg"),
    attributes: r.u32be("attributes"),
    authPolicy: r.sized16be("authPolicy", 64),
    dataSize: r.u16be("dataSize"),
  };
}

export function encodeNvPublic(p: NvPublic): Uint8Array {
  return new ByteWriter()
    .u32be(p.nvIndex)
    .u16be(p.nameAlg)
    .u32be(p.attributes >>> 0)
    .sized16be(p.authPolicy)
    .u16be(p.dataSize)
    .finish();
}
