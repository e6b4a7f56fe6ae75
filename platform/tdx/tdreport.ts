// TDREPORT_STRUCT (1024 bytes; docs/spec/tdx-abi.md §1): what TDG.MR.REPORT returns and what Azure's
// HCL report embeds for TDX. MAC'ed by the CPU, not signed: only meaningful locally or to a QE.
import { ByteReader } from "../util/reader.ts";

export const TD_REPORT_SIZE = 1024;
export const TD_REPORT_TYPE_TDX = 0x81;

export interface TdReport {
  reportType: { type: number; subtype: number; version: number };
  cpuSvn: Uint8Array;
  teeTcbInfoHash: Uint8Array;
  teeInfoHash: Uint8Array;
  reportData: Uint8Array;
  mac: Uint8Array;
  teeTcbInfo: {
    valid: Uint8Array;
    teeTcbSvn: Uint8Array;
    mrSeam: Uint8Array;
    mrSignerSeam: Uint8Array;
    attributes: Uint8Array;
  };
  tdInfo: {
    attributes: Uint8Array;
    xfam: Uint8Array;
    mrTd: Uint8Array;
    mrConfigId: Uint8Array;
    mrOwner: Uint8Array;
    mrOwnerConfig: Uint8Array;
    rtmrs: [Uint8Array, Uint8Array, Uint8Array, Uint8Array];
    servtdHash: Uint8Array;
  };
}

export function parseTdReport(bytes: Uint8Array): TdReport {
  const r = new ByteReader(bytes.subarray(0, Math.min(bytes.length, TD_REPORT_SIZE)), "TDREPORT");
  if (bytes.length < TD_REPORT_SIZE) r.fail("TDREPORT", `${bytes.length} bytes, a TDREPORT has ${TD_REPORT_SIZE}`, 0);
  const type = r.u8("REPORTMACSTRUCT.type");
  if (type !== TD_REPORT_TYPE_TDX) r.fail("REPORTMACSTRUCT.type", `0x${type.toString(16)} is not TDX (0x81)`, 0);
  const subtype = r.u8("REPORTMACSTRUCT.subtype");
  const version = r.u8("REPORTMACSTRUCT.version");
  r.skip(1 + 12, "REPORTMACSTRUCT.reserved");
  const cpuSvn = r.bytes(16, "REPORTMACSTRUCT.cpusvn");
  const teeTcbInfoHash = r.bytes(48, "REPORTMACSTRUCT.tee_tcb_info_hash");
  const teeInfoHash = r.bytes(48, "REPORTMACSTRUCT.tee_info_hash");
  const reportData = r.bytes(64, "REPORTMACSTRUCT.reportdata");
  r.skip(32, "REPORTMACSTRUCT.reserved");
  const mac = r.bytes(32, "REPORTMACSTRUCT.mac");
  const teeTcbInfo = {
    valid: r.bytes(8, "TEE_TCB_INFO.valid"),
    teeTcbSvn: r.bytes(16, "TEE_TCB_INFO.tee_tcb_svn"),
    mrSeam: r.bytes(48, "TEE_TCB_INFO.mrseam"),
    mrSignerSeam: r.bytes(48, "TEE_TCB_INFO.mrsignerseam"),
    attributes: r.bytes(8, "TEE_TCB_INFO.attributes"),
  };
  r.seek(0x200, "TDINFO");
  const tdInfo = {
    attributes: r.bytes(8, "TDINFO.attributes"),
    xfam: r.bytes(8, "TDINFO.xfam"),
    mrTd: r.bytes(48, "TDINFO.mrtd"),
    mrConfigId: r.bytes(48, "TDINFO.mrconfigid"),
    mrOwner: r.bytes(48, "TDINFO.mrowner"),
    mrOwnerConfig: r.bytes(48, "TDINFO.mrownerconfig"),
    rtmrs: [
      r.bytes(48, "TDINFO.rtmr0"),
      r.bytes(48, "TDINFO.rtmr1"),
      r.bytes(48, "TDINFO.rtmr2"),
      r.bytes(48, "TDINFO.rtmr3"),
    ] as TdReport["tdInfo"]["rtmrs"],
    servtdHash: r.bytes(48, "TDINFO.servtd_hash"),
  };
  return {
    reportType: { type, subtype, version },
    cpuSvn,
    teeTcbInfoHash,
    teeInfoHash,
    reportData,
    mac,
    teeTcbInfo,
    tdInfo,
  };
}
