// Builds HCL reports in Azure's real layout (docs/spec/azure-hcl.md §2) for the paravisor stand-in:
// header, a hardware report whose REPORT_DATA[0:32] = SHA-256(runtime claims) (SNP report signed
// by the test VCEK, or a TDREPORT), HclData, and the runtime claims JSON carrying the vTPM AK
// as HCLAkPub and the guest's user-data — zero-padded to the NV index size.
import { createHash } from "node:crypto";
import {
  HCL_DATA_OFFSET,
  HCL_REPORT_TYPE,
  HCL_SIGNATURE,
  HW_REPORT_OFFSET,
  VAR_DATA_OFFSET,
} from "../../platform/azure/hcl.ts";
import { TD_REPORT_SIZE, TD_REPORT_TYPE_TDX } from "../../platform/tdx/tdreport.ts";
import { concat } from "../../platform/util/bytes.ts";
import { makeSignedReport, type TestPki } from "./snp-fixtures.ts";

export type HclTee = "snp" | "tdx";

export interface RsaPublicJwk {
  kty: "RSA";
  n: string;
  e: string;
}

export interface HclBuildOptions {
  tee: HclTee;
  akPub: RsaPublicJwk;
  /** Raw user-data bytes (Azure reports 64 bytes; shorter input is zero-padded). */
  userData: Uint8Array;
  /** Needed for SNP: signs the embedded report. */
  pki?: TestPki;
  /** Total NV blob size (Azure: 2600). */
  nvSize?: number;
  /** TDREPORT MRTD (TDX only). */
  mrTd?: Uint8Array;
}

export const TD_REPORT_DATA_OFFSET = 0x80;
/** TDREPORT: REPORTMACSTRUCT (256) ‖ TEE_TCB_INFO (239) ‖ reserved (17) ‖ TDINFO; MRTD is TDINFO+16. */
export const TD_REPORT_MRTD_OFFSET = 0x200 + 16;

/** Runtime claims as Azure's paravisor formats them: compact JSON, HCLAkPub first. */
export function runtimeClaims(akPub: RsaPublicJwk, userData: Uint8Array): string {
  const ud = new Uint8Array(Math.max(64, userData.length));
  ud.set(userData);
  return JSON.stringify({
    keys: [{ kid: "HCLAkPub", key_ops: ["sign"], kty: "RSA", e: akPub.e, n: akPub.n }],
    "vm-configuration": {
      "console-enabled": true,
      "secure-boot": true,
      "tpm-enabled": true,
      vmUniqueId: "5F0B0C57-7E55-4C4B-9C43-CVMUNLOCKTEST",
    },
    "user-data": Buffer.from(ud).toString("hex").toUpperCase(),
  });
}

function tdReport(reportData: Uint8Array, mrTd: Uint8Array): Uint8Array {
  const r = new Uint8Array(TD_REPORT_SIZE);
  r[0] = TD_REPORT_TYPE_TDX;
  r.set(reportData, TD_REPORT_DATA_OFFSET);
  r.set(mrTd, TD_REPORT_MRTD_OFFSET);
  return r;
}

export function buildHclReport(o: HclBuildOptions, claimsText = runtimeClaims(o.akPub, o.userData)): Uint8Array {
  const claims = new TextEncoder().encode(claimsText);
  const reportData = concat(new Uint8Array(createHash("sha256").update(claims).digest()), new Uint8Array(32));
  let hw: Uint8Array;
  if (o.tee === "snp") {
    if (!o.pki) throw new Error("buildHclReport: SNP needs the test PKI");
    hw = makeSignedReport(o.pki, { reportData, vmpl: 0 });
  } else {
    hw = tdReport(reportData, o.mrTd ?? new Uint8Array(48).fill(0x7d));
  }
  const nvSize = o.nvSize ?? 2600;
  const reportSize = VAR_DATA_OFFSET + claims.length;
  if (reportSize > nvSize) throw new Error(`buildHclReport: ${reportSize} bytes do not fit the ${nvSize}-byte NV area`);
  const out = new Uint8Array(nvSize);
  const v = new DataView(out.buffer);
  v.setUint32(0x00, HCL_SIGNATURE, true);
  v.setUint32(0x04, o.tee === "snp" ? 1 : 2, true);
  v.setUint32(0x08, reportSize, true);
  v.setUint32(0x0c, 2, true); // AkCertRequest, as in every real report seen
  out.set(hw, HW_REPORT_OFFSET);
  // HclData: data_size (its 20 fixed bytes + claims), version, report_type, hash type, claims size
  v.setUint32(HCL_DATA_OFFSET, 20 + claims.length, true);
  v.setUint32(HCL_DATA_OFFSET + 4, 1, true);
  v.setUint32(HCL_DATA_OFFSET + 8, o.tee === "snp" ? HCL_REPORT_TYPE.SNP : HCL_REPORT_TYPE.TDX, true);
  v.setUint32(HCL_DATA_OFFSET + 12, 1, true); // SHA-256
  v.setUint32(HCL_DATA_OFFSET + 16, claims.length, true);
  out.set(claims, VAR_DATA_OFFSET);
  return out;
}
