// /dev/sev-guest: SNP_GET_EXT_REPORT / SNP_GET_REPORT (docs/spec/snp-abi.md §1). Struct codecs are pure;
// `requestReportViaIoctl` drives an injected IoctlDevice.
//
// Care with the device: a failed guest request can make the driver wipe the VMPCK, after which
// every request fails with ENOTTY until reboot. So: one request at a time, at most
// MAX_GUEST_REQUESTS per report, a minimum interval between requests, and retries only for the
// two cases the kernel defines as harmless (certificate buffer too small; host busy).
import * as fs from "node:fs";
import { CvmError } from "../util/errors.ts";
import { ByteReader } from "../util/reader.ts";
import { ERRNO, SNP_GET_EXT_REPORT, SNP_GET_REPORT, SNP_GUEST_REQUEST_SIZE, type IoctlDevice } from "./ioctl.ts";
import { SNP_REPORT_SIZE } from "./report.ts";

export const SNP_REPORT_REQ_SIZE = 0x60;
export const SNP_EXT_REPORT_REQ_SIZE = 0x70;
export const SNP_REPORT_RESP_SIZE = 4000;
export const PAGE = 4096;
/** SEV_FW_BLOB_MAX_SIZE in mainline is 16 KiB; start there so one request usually suffices. */
export const INITIAL_CERTS_LEN = 0x4000;
/** Never allocate more than this for the host's certificate table. */
export const MAX_CERTS_LEN = 0x10000;
export const MAX_GUEST_REQUESTS = 3;

/** exitinfo2 = vmm_error << 32 | fw_error. */
export const VMM_ERR_INVALID_LEN = 1;
export const VMM_ERR_BUSY = 2;
const FW_ERRORS: Record<number, string> = { 0x16: "INVALID_PARAM", 0x27: "INVALID_KEY" };

// ---- struct codecs ----------------------------------------------------------------------------------
/** struct snp_guest_request_ioctl: msg_version 1, req/resp addresses, exitinfo2 zeroed. */
export function encodeGuestRequest(reqAddr: bigint, respAddr: bigint): Uint8Array {
  const b = new Uint8Array(new ArrayBuffer(SNP_GUEST_REQUEST_SIZE));
  const v = new DataView(b.buffer);
  b[0] = 1;
  v.setBigUint64(0x08, reqAddr, true);
  v.setBigUint64(0x10, respAddr, true);
  return b;
}

export function exitInfo2(guestReq: Uint8Array): { fw: number; vmm: number; raw: bigint } {
  const v = new DataView(guestReq.buffer, guestReq.byteOffset, guestReq.byteLength);
  return { fw: v.getUint32(0x18, true), vmm: v.getUint32(0x1c, true), raw: v.getBigUint64(0x18, true) };
}

function putReportReq(b: Uint8Array, userData: Uint8Array, vmpl: number): void {
  if (userData.length !== 64) throw new CvmError("internal", `SNP user_data must be 64 bytes, got ${userData.length}`);
  b.set(userData, 0);
  new DataView(b.buffer, b.byteOffset).setUint32(0x40, vmpl, true);
}

/** struct snp_report_req (0x60). */
export function encodeReportReq(userData: Uint8Array, vmpl: number): Uint8Array {
  const b = new Uint8Array(new ArrayBuffer(SNP_REPORT_REQ_SIZE));
  putReportReq(b, userData, vmpl);
  return b;
}

/** struct snp_ext_report_req (0x70): report req, certs_address, certs_len. */
export function encodeExtReportReq(
  userData: Uint8Array,
  vmpl: number,
  certsAddr: bigint,
  certsLen: number,
): Uint8Array {
  const b = new Uint8Array(new ArrayBuffer(SNP_EXT_REPORT_REQ_SIZE));
  putReportReq(b, userData, vmpl);
  const v = new DataView(b.buffer);
  v.setBigUint64(0x60, certsAddr, true);
  v.setUint32(0x68, certsLen, true);
  return b;
}

export function extReportCertsLen(req: Uint8Array): number {
  return new DataView(req.buffer, req.byteOffset, req.byteLength).getUint32(0x68, true);
}

/** MSG_REPORT_RSP inside snp_report_resp: status, report_size, reserved, report. The ioctl does not check status. */
export function decodeReportResp(resp: Uint8Array): Uint8Array {
  const r = new ByteReader(resp, "SNP MSG_REPORT_RSP");
  const status = r.u32le("status");
  if (status !== 0)
    throw new CvmError(
      "evidence",
      `SEV firmware refused the report request: status 0x${status.toString(16)} ${FW_ERRORS[status] ?? ""}`.trim(),
    );
  const size = r.u32le("report_size");
  if (size !== SNP_REPORT_SIZE) r.fail("report_size", `expected ${SNP_REPORT_SIZE}, got ${size}`, 4);
  r.skip(0x18, "reserved");
  return r.bytes(SNP_REPORT_SIZE, "report").slice();
}

// ---- the request ------------------------------------------------------------------------------------
export interface IoctlReportOptions {
  devicePath: string;
  userData: Uint8Array;
  vmpl: number;
  /** SNP_GET_EXT_REPORT (report + certificate table) instead of SNP_GET_REPORT. */
  extended: boolean;
  /** Minimum time between two guest requests (go-sev-guest self-throttles at 2 s). */
  minIntervalMs?: number;
  /** Wait after the host said busy. */
  busyBackoffMs?: number;
  /** Bounded sleep (PlatformEnv.deadline.sleep). */
  sleep(ms: number, doing: string): Promise<void>;
}

export interface IoctlReport {
  report: Uint8Array;
  /** Certificate table buffer (extended only; zero-filled when the host has none). */
  certs: Uint8Array | undefined;
  requests: number;
}

/** A guest request the driver or firmware refused: the raw codes, for callers that must tell cases apart. */
export class GuestRequestError extends CvmError {
  constructor(
    readonly request: "SNP_GET_REPORT" | "SNP_GET_EXT_REPORT",
    readonly errno: number,
    readonly fwError: number,
    readonly vmmError: number,
    message: string,
  ) {
    super("evidence", message);
    this.name = "GuestRequestError";
  }
}

let lastRequestAt = 0;
let busy: Promise<unknown> = Promise.resolve();

function errnoName(n: number): string {
  return Object.entries(ERRNO).find(([, v]) => v === n)?.[0] ?? `errno ${n}`;
}

/** One report through /dev/sev-guest, serialised in-process, at most MAX_GUEST_REQUESTS requests. */
export function requestReportViaIoctl(dev: IoctlDevice, o: IoctlReportOptions): Promise<IoctlReport> {
  const run = busy.then(() => doRequest(dev, o));
  busy = run.catch(() => undefined);
  return run;
}

async function doRequest(dev: IoctlDevice, o: IoctlReportOptions): Promise<IoctlReport> {
  let fd: number;
  try {
    fd = fs.openSync(o.devicePath, "r+");
  } catch (e) {
    const code = (e as { code?: string }).code;
    throw new CvmError("platform", `cannot open ${o.devicePath}: ${code ?? (e as Error).message}`, {
      hint: "load the sev-guest module (modprobe sev-guest); root is required",
    });
  }
  try {
    let certsLen = INITIAL_CERTS_LEN;
    for (let n = 1; n <= MAX_GUEST_REQUESTS; n++) {
      const wait = lastRequestAt + (o.minIntervalMs ?? 2000) - Date.now();
      if (wait > 0) await o.sleep(wait, "pacing /dev/sev-guest requests");
      const resp = new Uint8Array(new ArrayBuffer(SNP_REPORT_RESP_SIZE));
      const certs = o.extended ? new Uint8Array(new ArrayBuffer(certsLen)) : undefined;
      const req = certs
        ? encodeExtReportReq(o.userData, o.vmpl, dev.addressOf(certs), certsLen)
        : encodeReportReq(o.userData, o.vmpl);
      const guest = encodeGuestRequest(dev.addressOf(req), dev.addressOf(resp));
      lastRequestAt = Date.now();
      const { rc, errno } = dev.ioctl(fd, o.extended ? SNP_GET_EXT_REPORT : SNP_GET_REPORT, guest);
      if (rc >= 0) return { report: decodeReportResp(resp), certs, requests: n };

      const info = exitInfo2(guest);
      const detail = `${errnoName(errno)}, fw_error 0x${info.fw.toString(16)}, vmm_error 0x${info.vmm.toString(16)}`;
      if (o.extended && errno === ERRNO.EIO && info.vmm === VMM_ERR_INVALID_LEN && info.fw === 0) {
        const needed = extReportCertsLen(req);
        if (needed <= certsLen || needed % PAGE !== 0 || needed > MAX_CERTS_LEN)
          throw new CvmError(
            "evidence",
            `the host asks for a ${needed}-byte certificate buffer (have ${certsLen}; must be a larger multiple of ${PAGE} up to ${MAX_CERTS_LEN})`,
          );
        certsLen = needed;
        continue;
      }
      if (errno === ERRNO.EAGAIN || info.vmm === VMM_ERR_BUSY) {
        if (n < MAX_GUEST_REQUESTS)
          await o.sleep((o.busyBackoffMs ?? 2000) * n, "waiting for the host to accept SNP guest requests");
        continue;
      }
      if (errno === ERRNO.ENOTTY)
        throw new CvmError(
          "platform",
          `${o.devicePath} does not accept SNP guest requests (${detail}): the guest's VMPCK was disabled after an earlier failed request, or this is not the sev-guest device`,
          {
            hint: "reboot the VM; SNP guest requests stay disabled until then",
          },
        );
      const request = o.extended ? "SNP_GET_EXT_REPORT" : "SNP_GET_REPORT";
      throw new GuestRequestError(
        request,
        errno,
        info.fw,
        info.vmm,
        `${o.devicePath}: ${request} failed (${detail}${FW_ERRORS[info.fw] ? " " + FW_ERRORS[info.fw] : ""})`,
      );
    }
    throw new CvmError(
      "evidence",
      `${o.devicePath}: no report after ${MAX_GUEST_REQUESTS} guest requests (host busy or certificate buffer kept growing)`,
    );
  } finally {
    fs.closeSync(fd);
  }
}
