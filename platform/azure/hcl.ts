// Pure codec for Azure's HCL report, the NV blob at 0x01400001 (docs/spec/azure-hcl.md §2):
//   0x000 header (HCLA, version, report_size, request_type, status, reserved)
//   0x020 hardware report: SNP ATTESTATION_REPORT (0x4A0) or TDX TDREPORT (0x400, rest zero)
//   0x4C0 HclData: data_size, version, report_type, report_data_hash_type, variable_data_size
//   0x4D4 variable data: UTF-8 JSON runtime claims (keys[] with HCLAkPub, user-data, ...)
// The blob comes from the host side of the vTPM: every size is checked against the buffer.
import { createHash } from "node:crypto";
import { bytesEqual, hex } from "../util/bytes.ts";
import { ByteReader } from "../util/reader.ts";
import { ParseError } from "../util/errors.ts";
import { TD_REPORT_SIZE } from "../tdx/tdreport.ts";

const STRUCT = "HCL report";
export const HCL_SIGNATURE = 0x414c4348; // "HCLA" little-endian
export const HW_REPORT_OFFSET = 0x20;
export const HW_REPORT_SIZE = 0x4a0;
export const HCL_DATA_OFFSET = 0x4c0;
export const VAR_DATA_OFFSET = 0x4d4;
/** HclData fields before the variable data (data_size counts them). */
const HCL_DATA_FIXED = 20;
/** REPORT_DATA inside the embedded hardware report. */
const SNP_REPORT_DATA_OFFSET = 0x50;
const TD_REPORT_DATA_OFFSET = 0x80;
/** Runtime claims larger than this are not something a paravisor produces. */
const MAX_VAR_DATA = 16 * 1024;

export const HCL_REPORT_TYPE = { SNP: 2, TVM: 3, TDX: 4 } as const;
export type HclTee = "snp" | "tdx";

export interface RsaJwk {
  kid: string;
  kty: "RSA";
  /** base64url, no padding */
  n: string;
  e: string;
  key_ops?: string[];
}

export interface HclReport {
  /** The full NV blob, including zero padding (what evidence carries). */
  raw: Uint8Array;
  version: number;
  /** Meaningful length of `raw`. */
  reportSize: number;
  requestType: number;
  tee: HclTee;
  reportType: number;
  /** 1 SHA-256, 2 SHA-384, 3 SHA-512 (only 1 has been seen). */
  hashType: number;
  /** SNP ATTESTATION_REPORT (1184 bytes) or TDREPORT (1024 bytes). */
  hardwareReport: Uint8Array;
  /** The hardware report's 64-byte REPORT_DATA / REPORTDATA. */
  reportData: Uint8Array;
  /** Runtime claims exactly as stored: what REPORT_DATA[0:32] hashes. */
  variableData: Uint8Array;
  claims: Record<string, unknown>;
  /** keys[kid == "HCLAkPub"]: the public half of the vTPM AK at 0x81000003. */
  akPub: RsaJwk | undefined;
  /** runtime claims "user-data" (hex) or undefined when absent. */
  userData: string | undefined;
}

export function parseHclReport(raw: Uint8Array): HclReport {
  const r = new ByteReader(raw, STRUCT);
  const sig = r.u32le("signature");
  if (sig !== HCL_SIGNATURE) r.fail("signature", `0x${sig.toString(16)} is not "HCLA"`, 0);
  const version = r.u32le("version");
  const sizeAt = r.offset;
  const reportSize = r.u32le("report_size");
  if (reportSize > raw.length) r.fail("report_size", `${reportSize} exceeds the ${raw.length}-byte blob`, sizeAt);
  if (reportSize < VAR_DATA_OFFSET)
    r.fail("report_size", `${reportSize} is smaller than the fixed part (${VAR_DATA_OFFSET})`, sizeAt);
  const requestType = r.u32le("request_type");
  r.seek(HCL_DATA_OFFSET, "hcl_data");
  const dataSizeAt = r.offset;
  const dataSize = r.u32le("hcl_data.data_size");
  r.u32le("hcl_data.version");
  const typeAt = r.offset;
  const reportType = r.u32le("hcl_data.report_type");
  const hashAt = r.offset;
  const hashType = r.u32le("hcl_data.report_data_hash_type");
  const varAt = r.offset;
  const varSize = r.u32le("hcl_data.variable_data_size");
  if (varSize > MAX_VAR_DATA) r.fail("hcl_data.variable_data_size", `${varSize} exceeds ${MAX_VAR_DATA}`, varAt);
  if (VAR_DATA_OFFSET + varSize > reportSize)
    r.fail("hcl_data.variable_data_size", `${varSize} bytes run past report_size ${reportSize}`, varAt);
  if (dataSize !== HCL_DATA_FIXED + varSize)
    r.fail("hcl_data.data_size", `${dataSize} != ${HCL_DATA_FIXED} + variable_data_size ${varSize}`, dataSizeAt);
  if (hashType < 1 || hashType > 3) r.fail("hcl_data.report_data_hash_type", `unknown hash type ${hashType}`, hashAt);

  let tee: HclTee;
  let hardwareReport: Uint8Array;
  let reportData: Uint8Array;
  if (reportType === HCL_REPORT_TYPE.SNP) {
    tee = "snp";
    hardwareReport = raw.slice(HW_REPORT_OFFSET, HW_REPORT_OFFSET + HW_REPORT_SIZE);
    reportData = hardwareReport.slice(SNP_REPORT_DATA_OFFSET, SNP_REPORT_DATA_OFFSET + 64);
  } else if (reportType === HCL_REPORT_TYPE.TDX) {
    tee = "tdx";
    hardwareReport = raw.slice(HW_REPORT_OFFSET, HW_REPORT_OFFSET + TD_REPORT_SIZE);
    reportData = hardwareReport.slice(TD_REPORT_DATA_OFFSET, TD_REPORT_DATA_OFFSET + 64);
  } else {
    return r.fail("hcl_data.report_type", `${reportType} is neither SNP (2) nor TDX (4)`, typeAt);
  }

  const variableData = raw.slice(VAR_DATA_OFFSET, VAR_DATA_OFFSET + varSize);
  const claims = parseClaims(variableData);
  const akPub = findAkPub(claims);
  const ud = claims["user-data"];
  if (ud !== undefined && (typeof ud !== "string" || !/^[0-9a-fA-F]*$/.test(ud)))
    throw new ParseError(STRUCT, "runtime_claims.user-data", VAR_DATA_OFFSET, "not a hex string");
  return {
    raw,
    version,
    reportSize,
    requestType,
    tee,
    reportType,
    hashType,
    hardwareReport,
    reportData,
    variableData,
    claims,
    akPub,
    userData: ud,
  };
}

function parseClaims(bytes: Uint8Array): Record<string, unknown> {
  let v: unknown;
  try {
    v = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(bytes));
  } catch (e) {
    throw new ParseError(STRUCT, "runtime_claims", VAR_DATA_OFFSET, `not UTF-8 JSON: ${(e as Error).message}`);
  }
  if (v === null || typeof v !== "object" || Array.isArray(v))
    throw new ParseError(STRUCT, "runtime_claims", VAR_DATA_OFFSET, "not a JSON object");
  return v as Record<string, unknown>;
}

function findAkPub(claims: Record<string, unknown>): RsaJwk | undefined {
  const keys = claims.keys;
  if (keys === undefined) return undefined;
  if (!Array.isArray(keys)) throw new ParseError(STRUCT, "runtime_claims.keys", VAR_DATA_OFFSET, "not an array");
  const k = keys.find((x) => x && typeof x === "object" && (x as { kid?: unknown }).kid === "HCLAkPub") as
    Record<string, unknown> | undefined;
  if (!k) return undefined;
  const b64u = /^[A-Za-z0-9_-]+$/;
  if (k.kty !== "RSA" || typeof k.n !== "string" || typeof k.e !== "string" || !b64u.test(k.n) || !b64u.test(k.e))
    throw new ParseError(
      STRUCT,
      "runtime_claims.keys[HCLAkPub]",
      VAR_DATA_OFFSET,
      "not an RSA JWK with base64url n and e",
    );
  return k as unknown as RsaJwk;
}

/** SHA-256 of the runtime claims bytes as stored, which the hardware REPORT_DATA[0:32] must equal. */
export function runtimeClaimsDigest(report: Pick<HclReport, "variableData">): Uint8Array {
  return new Uint8Array(createHash("sha256").update(report.variableData).digest());
}

/** True when the hardware report binds the runtime claims (REPORT_DATA[0:32] == SHA-256(claims)). */
export function reportDataBindsClaims(report: HclReport): boolean {
  return bytesEqual(report.reportData.subarray(0, 32), runtimeClaimsDigest(report));
}

/** True when the claims' user-data (hex) starts with hex(digest), trustee's v2 freshness check. */
export function userDataCarries(report: Pick<HclReport, "userData">, digest: Uint8Array): boolean {
  return report.userData !== undefined && report.userData.toLowerCase().startsWith(hex(digest));
}
