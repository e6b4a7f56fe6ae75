// Intel TDX quote v4 / v5 codec (docs/spec/tdx-abi.md §2; DCAP sgx_quote_4.h / sgx_quote_5.h).
// Pure: bytes <-> structure. All integers little-endian. Quotes come from the host (QGS), so the
// parser bounds everything by sig_data_len and ignores bytes after the signature data (real
// blobs carry zero padding or junk there).
import { ByteReader, ByteWriter } from "../util/reader.ts";
import { concat } from "../util/bytes.ts";

export const TDX_TEE_TYPE = 0x00000081;
export const ATT_KEY_TYPE_ECDSA_P256 = 2;
/** v5 body types: 2 = TD report 1.0 (584 bytes), 3 = TD report 1.5 (648 bytes). */
export const BODY_SIZES: Readonly<Record<2 | 3, number>> = { 2: 584, 3: 648 };
export const INTEL_QE_VENDOR_ID = "939a7233f79c4ca9940a0db3957f0607";
/** Upper bound on signature data (PCK chain PEMs are ~4 KiB; the kernel buffer is 8 KiB). */
export const MAX_SIG_DATA = 64 * 1024;
/** Certification data types (DCAP): 5 = PCK cert chain (PEM), 6 = QE report certification data. */
export const CERT_TYPE_PCK_CHAIN = 5;
export const CERT_TYPE_QE_REPORT = 6;
const SGX_REPORT_BODY_SIZE = 384;

export interface TdxQuoteHeader {
  version: 4 | 5;
  attKeyType: number;
  teeType: number;
  /** Bytes 8..11: reserved in DCAP; go-tdx-guest reads them as QE SVN / PCE SVN. */
  reserved: Uint8Array;
  qeVendorId: Uint8Array;
  userData: Uint8Array;
}

export interface TdxQuoteBody {
  teeTcbSvn: Uint8Array; // 16
  mrSeam: Uint8Array; // 48
  mrSignerSeam: Uint8Array; // 48
  seamAttributes: Uint8Array; // 8
  tdAttributes: Uint8Array; // 8
  xfam: Uint8Array; // 8
  mrTd: Uint8Array; // 48
  mrConfigId: Uint8Array; // 48
  mrOwner: Uint8Array; // 48
  mrOwnerConfig: Uint8Array; // 48
  rtmrs: [Uint8Array, Uint8Array, Uint8Array, Uint8Array]; // 48 each
  reportData: Uint8Array; // 64
  /** TD 1.5 (v5 body type 3) only. */
  teeTcbSvn2?: Uint8Array; // 16
  mrServiceTd?: Uint8Array; // 48
}

export interface QeReportCertification {
  /** SGX REPORT body of the Quoting Enclave (384 bytes). */
  qeReport: Uint8Array;
  qeReportSignature: Uint8Array; // 64, r||s big-endian, by the PCK key
  qeAuthData: Uint8Array;
  /** Inner certification data, normally type 5 = PEM PCK chain. */
  inner: { type: number; data: Uint8Array };
}

export interface TdxSignatureData {
  /** ECDSA-P256 r||s (big-endian) over the signed bytes. */
  signature: Uint8Array;
  /** Attestation public key x||y (big-endian, no 0x04 prefix). */
  attestationKey: Uint8Array;
  certType: number;
  certData: Uint8Array;
  /** Decoded when certType is 6. */
  qe?: QeReportCertification;
}

export interface TdxQuote {
  header: TdxQuoteHeader;
  /** 2 (TD 1.0) or 3 (TD 1.5); v4 quotes are always 2. */
  bodyType: 2 | 3;
  body: TdxQuoteBody;
  /** The bytes the attestation key signed: header (‖ v5 type+size) ‖ body. */
  signedBytes: Uint8Array;
  sigDataLen: number;
  signatureData: TdxSignatureData;
  /** Quote length proper (signed bytes + 4 + sig_data_len). */
  length: number;
  /** Bytes after the signature data, ignored. */
  trailing: number;
}

const STRUCT = "TDX quote";

function readHeader(r: ByteReader): TdxQuoteHeader {
  const version = r.u16le("header.version");
  if (version !== 4 && version !== 5) r.fail("header.version", `${version} (supported: 4, 5)`, 0);
  const attKeyType = r.u16le("header.att_key_type");
  if (attKeyType !== ATT_KEY_TYPE_ECDSA_P256)
    r.fail("header.att_key_type", `${attKeyType} (supported: 2 = ECDSA-P256)`, 2);
  const teeType = r.u32le("header.tee_type");
  if (teeType !== TDX_TEE_TYPE)
    r.fail(
      "header.tee_type",
      `0x${teeType.toString(16)} is not TDX (0x81)${teeType === 0 ? "; this is an SGX quote" : ""}`,
      4,
    );
  return {
    version,
    attKeyType,
    teeType,
    reserved: r.bytes(4, "header.reserved"),
    qeVendorId: r.bytes(16, "header.qe_vendor_id"),
    userData: r.bytes(20, "header.user_data"),
  };
}

function readBody(r: ByteReader, type: 2 | 3): TdxQuoteBody {
  const b: TdxQuoteBody = {
    teeTcbSvn: r.bytes(16, "body.tee_tcb_svn"),
    mrSeam: r.bytes(48, "body.mr_seam"),
    mrSignerSeam: r.bytes(48, "body.mr_signer_seam"),
    seamAttributes: r.bytes(8, "body.seam_attributes"),
    tdAttributes: r.bytes(8, "body.td_attributes"),
    xfam: r.bytes(8, "body.xfam"),
    mrTd: r.bytes(48, "body.mr_td"),
    mrConfigId: r.bytes(48, "body.mr_config_id"),
    mrOwner: r.bytes(48, "body.mr_owner"),
    mrOwnerConfig: r.bytes(48, "body.mr_owner_config"),
    rtmrs: [r.bytes(48, "body.rtmr0"), r.bytes(48, "body.rtmr1"), r.bytes(48, "body.rtmr2"), r.bytes(48, "body.rtmr3")],
    reportData: r.bytes(64, "body.report_data"),
  };
  if (type === 3) {
    b.teeTcbSvn2 = r.bytes(16, "body.tee_tcb_svn2");
    b.mrServiceTd = r.bytes(48, "body.mr_service_td");
  }
  return b;
}

function readQeCertification(buf: Uint8Array, start: number): QeReportCertification {
  const r = new ByteReader(buf, `${STRUCT} QE report certification data`, start);
  const qeReport = r.bytes(SGX_REPORT_BODY_SIZE, "qe_report");
  const qeReportSignature = r.bytes(64, "qe_report_signature");
  const authSize = r.u16le("qe_auth_data.size");
  const qeAuthData = r.bytes(authSize, "qe_auth_data");
  const type = r.u16le("certification_data.type");
  const sizeAt = r.offset;
  const size = r.u32le("certification_data.size");
  if (size > r.remaining) r.fail("certification_data.size", `${size} bytes declared, ${r.remaining} present`, sizeAt);
  const data = r.bytes(size, "certification_data");
  r.end("certification_data");
  return { qeReport, qeReportSignature, qeAuthData, inner: { type, data } };
}

/** Parse a quote blob (v4 or v5, TDX, ECDSA-P256). Throws ParseError with field and offset. */
export function parseTdxQuote(bytes: Uint8Array): TdxQuote {
  const r = new ByteReader(bytes, STRUCT);
  const header = readHeader(r);
  let bodyType: 2 | 3 = 2;
  if (header.version === 5) {
    const typeAt = r.offset;
    const t = r.u16le("body_descriptor.type");
    if (t !== 2 && t !== 3)
      return r.fail(
        "body_descriptor.type",
        `${t} (2 = TD 1.0, 3 = TD 1.5${t === 1 ? "; 1 is an SGX body" : ""})`,
        typeAt,
      );
    bodyType = t;
    const sizeAt = r.offset;
    const size = r.u32le("body_descriptor.size");
    if (size !== BODY_SIZES[bodyType])
      r.fail(
        "body_descriptor.size",
        `${size} bytes for body type ${bodyType} (must be ${BODY_SIZES[bodyType]})`,
        sizeAt,
      );
  }
  const body = readBody(r, bodyType);
  const signedBytes = bytes.subarray(0, r.offset);
  const lenAt = r.offset;
  const sigDataLen = r.u32le("signature_data_len");
  if (sigDataLen > MAX_SIG_DATA)
    r.fail("signature_data_len", `${sigDataLen} exceeds the limit of ${MAX_SIG_DATA}`, lenAt);
  if (sigDataLen > r.remaining)
    r.fail("signature_data_len", `${sigDataLen} bytes declared, only ${r.remaining} present (truncated quote)`, lenAt);
  const sigStart = r.offset;
  const sig = new ByteReader(bytes.subarray(0, sigStart + sigDataLen), STRUCT, sigStart);
  const signature = sig.bytes(64, "signature_data.signature");
  const attestationKey = sig.bytes(64, "signature_data.attestation_key");
  const certType = sig.u16le("signature_data.certification_data.type");
  const certSizeAt = sig.offset;
  const certSize = sig.u32le("signature_data.certification_data.size");
  if (certSize !== sig.remaining)
    sig.fail(
      "signature_data.certification_data.size",
      `${certSize} bytes declared, ${sig.remaining} left in the signature data`,
      certSizeAt,
    );
  const certData = sig.bytes(certSize, "signature_data.certification_data");
  const signatureData: TdxSignatureData = { signature, attestationKey, certType, certData };
  if (certType === CERT_TYPE_QE_REPORT)
    signatureData.qe = readQeCertification(bytes.subarray(0, sig.offset), sig.offset - certSize);
  const length = sigStart + sigDataLen;
  return { header, bodyType, body, signedBytes, sigDataLen, signatureData, length, trailing: bytes.length - length };
}

// ---- encoding (fixtures, round-trip tests) -------------------------------------------------

function fixed(w: ByteWriter, b: Uint8Array, size: number, field: string): void {
  if (b.length !== size) throw new RangeError(`TDX quote encode: ${field} must be ${size} bytes, got ${b.length}`);
  w.bytes(b);
}

export function encodeBody(body: TdxQuoteBody, type: 2 | 3): Uint8Array {
  const w = new ByteWriter();
  fixed(w, body.teeTcbSvn, 16, "tee_tcb_svn");
  fixed(w, body.mrSeam, 48, "mr_seam");
  fixed(w, body.mrSignerSeam, 48, "mr_signer_seam");
  fixed(w, body.seamAttributes, 8, "seam_attributes");
  fixed(w, body.tdAttributes, 8, "td_attributes");
  fixed(w, body.xfam, 8, "xfam");
  fixed(w, body.mrTd, 48, "mr_td");
  fixed(w, body.mrConfigId, 48, "mr_config_id");
  fixed(w, body.mrOwner, 48, "mr_owner");
  fixed(w, body.mrOwnerConfig, 48, "mr_owner_config");
  body.rtmrs.forEach((m, i) => fixed(w, m, 48, `rtmr${i}`));
  fixed(w, body.reportData, 64, "report_data");
  if (type === 3) {
    fixed(w, body.teeTcbSvn2 ?? new Uint8Array(16), 16, "tee_tcb_svn2");
    fixed(w, body.mrServiceTd ?? new Uint8Array(48), 48, "mr_service_td");
  }
  return w.finish();
}

/** header ‖ (v5: body type ‖ body size) ‖ body: exactly what the attestation key signs. */
export function encodeSignedPart(header: TdxQuoteHeader, bodyType: 2 | 3, body: TdxQuoteBody): Uint8Array {
  if (header.version === 4 && bodyType !== 2)
    throw new RangeError("TDX quote encode: v4 quotes carry TD 1.0 bodies only");
  const w = new ByteWriter().u16le(header.version).u16le(header.attKeyType).u32le(header.teeType);
  fixed(w, header.reserved, 4, "reserved");
  fixed(w, header.qeVendorId, 16, "qe_vendor_id");
  fixed(w, header.userData, 20, "user_data");
  if (header.version === 5) w.u16le(bodyType).u32le(BODY_SIZES[bodyType]);
  return concat(w.finish(), encodeBody(body, bodyType));
}

export function encodeQeCertification(qe: QeReportCertification): Uint8Array {
  const w = new ByteWriter();
  fixed(w, qe.qeReport, SGX_REPORT_BODY_SIZE, "qe_report");
  fixed(w, qe.qeReportSignature, 64, "qe_report_signature");
  w.u16le(qe.qeAuthData.length).bytes(qe.qeAuthData);
  w.u16le(qe.inner.type).u32le(qe.inner.data.length).bytes(qe.inner.data);
  return w.finish();
}

export function encodeSignatureData(s: Omit<TdxSignatureData, "qe">): Uint8Array {
  const w = new ByteWriter();
  fixed(w, s.signature, 64, "signature");
  fixed(w, s.attestationKey, 64, "attestation_key");
  w.u16le(s.certType).u32le(s.certData.length).bytes(s.certData);
  return w.finish();
}

/** signed part ‖ u32 sig_data_len ‖ sig_data. */
export function encodeTdxQuote(signedPart: Uint8Array, signatureData: Uint8Array): Uint8Array {
  return concat(signedPart, new ByteWriter().u32le(signatureData.length).finish(), signatureData);
}

// ---- interpretation for people --------------------------------------------------------------

export interface TdAttributes {
  debug: boolean;
  septVeDisable: boolean;
  protectionKeys: boolean;
  keyLocker: boolean;
  perfmon: boolean;
  raw: bigint;
}

/** TDATTRIBUTES bits (TDX module ABI): 0 DEBUG, 28 SEPT_VE_DISABLE, 30 PKS, 31 KL, 63 PERFMON. */
export function decodeTdAttributes(attr: Uint8Array): TdAttributes {
  const raw = new DataView(attr.buffer, attr.byteOffset, 8).getBigUint64(0, true);
  const bit = (n: number) => ((raw >> BigInt(n)) & 1n) === 1n;
  return { debug: bit(0), septVeDisable: bit(28), protectionKeys: bit(30), keyLocker: bit(31), perfmon: bit(63), raw };
}
