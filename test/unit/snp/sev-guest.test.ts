import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { SNP_GET_DERIVED_KEY, SNP_GET_EXT_REPORT, SNP_GET_REPORT } from "../../../platform/snp/ioctl.ts";
import {
  decodeReportResp,
  encodeExtReportReq,
  encodeGuestRequest,
  requestReportViaIoctl,
  type IoctlReportOptions,
} from "../../../platform/snp/sev-guest.ts";
import { parseCertTable } from "../../../platform/snp/certs.ts";
import { decodeSnpReport } from "../../../platform/snp/report.ts";
import { CvmError } from "../../../platform/util/errors.ts";
import { FakeSevGuest, makeCertTable, testPki } from "../../helpers/snp-fixtures.ts";

const pki = testPki();
const dir = fs.mkdtempSync(path.join(os.tmpdir(), "sev-guest-"));
const devicePath = path.join(dir, "sev-guest");
fs.writeFileSync(devicePath, "");
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

const userData = new Uint8Array(64).map((_, i) => i + 1);
const sleeps: number[] = [];
function opts(extended = true): IoctlReportOptions {
  return {
    devicePath,
    userData,
    vmpl: 0,
    extended,
    minIntervalMs: 0,
    busyBackoffMs: 1,
    sleep: async (ms) => void sleeps.push(ms),
  };
}

describe("sev-guest ioctl ABI", () => {
  it("request numbers match _IOWR('S', nr, 0x20)", () => {
    expect(SNP_GET_REPORT).toBe(0xc0205300n);
    expect(SNP_GET_DERIVED_KEY).toBe(0xc0205301n);
    expect(SNP_GET_EXT_REPORT).toBe(0xc0205302n);
  });

  it("struct layouts: msg_version 1, addresses at 0x08/0x10, certs at 0x60/0x68", () => {
    const g = encodeGuestRequest(0x1122334455667788n, 0x99n);
    expect(g.length).toBe(0x20);
    expect(g[0]).toBe(1);
    expect(Buffer.from(g.subarray(8, 16)).readBigUInt64LE()).toBe(0x1122334455667788n);
    const r = encodeExtReportReq(userData, 2, 0xabcn, 0x4000);
    expect(r.length).toBe(0x70);
    expect(Buffer.from(r).readUInt32LE(0x40)).toBe(2);
    expect(Buffer.from(r).readBigUInt64LE(0x60)).toBe(0xabcn);
    expect(Buffer.from(r).readUInt32LE(0x68)).toBe(0x4000);
  });

  it("MSG_REPORT_RSP: a firmware status is an error; a wrong report_size a ParseError", () => {
    const resp = new Uint8Array(4000);
    resp[0] = 0x16;
    expect(() => decodeReportResp(resp)).toThrow(/status 0x16 INVALID_PARAM/);
    resp[0] = 0;
    resp[4] = 0x10;
    expect(() => decodeReportResp(resp)).toThrow(/report_size/);
  });
});

describe("SNP_GET_EXT_REPORT against the stand-in driver", () => {
  it("one request with a 16 KiB certs buffer gets the report and the table", async () => {
    const dev = new FakeSevGuest({ pki });
    const r = await requestReportViaIoctl(dev, opts());
    expect(r.requests).toBe(1);
    expect(dev.calls).toMatchObject([
      { request: SNP_GET_EXT_REPORT, msgVersion: 1, vmpl: 0, certsLen: 0x4000, outcome: "ok" },
    ]);
    expect(decodeSnpReport(r.report).report_data).toEqual(userData);
    expect(parseCertTable(r.certs!).map((e) => e.type)).toEqual(["VCEK", "ASK", "ARK"]);
  });

  it("grows the certificate buffer when the kernel says EIO + needed size", async () => {
    const big = new Uint8Array(20_000);
    big.set(makeCertTable(pki));
    const dev = new FakeSevGuest({ pki, certTable: big, maxCertsLen: 0x8000 });
    const r = await requestReportViaIoctl(dev, opts());
    expect(dev.calls.map((c) => [c.certsLen, c.outcome])).toEqual([
      [0x4000, "certs too small"],
      [0x5000, "ok"],
    ]);
    expect(r.certs!.length).toBe(0x5000);
  });

  it("retries a busy host with bounded backoff, then gives up after 3 requests", async () => {
    sleeps.length = 0;
    const ok = await requestReportViaIoctl(new FakeSevGuest({ pki, busyFirst: 2 }), opts());
    expect(ok.requests).toBe(3);
    expect(sleeps).toEqual([1, 2]);
    const dev = new FakeSevGuest({ pki, busyFirst: 5 });
    await expect(requestReportViaIoctl(dev, opts())).rejects.toThrow(/no report after 3 guest requests/);
    expect(dev.calls.length).toBe(3);
  });

  it("ENOTTY (VMPCK disabled) is not retried and says to reboot", async () => {
    const dev = new FakeSevGuest({ pki, vmpckDisabled: true });
    const e = await requestReportViaIoctl(dev, opts()).catch((x) => x);
    expect(e).toBeInstanceOf(CvmError);
    expect(e.hint).toMatch(/reboot/);
    expect(e.message).toMatch(/ENOTTY/);
    expect(dev.calls.length).toBe(1);
  });

  it("a firmware error status is reported, not retried", async () => {
    const dev = new FakeSevGuest({ pki, fwStatus: 0x27 });
    await expect(requestReportViaIoctl(dev, opts())).rejects.toThrow(/status 0x27 INVALID_KEY/);
    expect(dev.calls.length).toBe(1);
  });

  it("SNP_GET_REPORT (no certificates) works too", async () => {
    const dev = new FakeSevGuest({ pki });
    const r = await requestReportViaIoctl(dev, opts(false));
    expect(dev.calls[0]!.request).toBe(SNP_GET_REPORT);
    expect(r.certs).toBeUndefined();
  });

  it("a host asking for an absurd certificate buffer is refused", async () => {
    const dev = new FakeSevGuest({ pki, certTable: new Uint8Array(0x20000).fill(1), maxCertsLen: 0x40000 });
    await expect(requestReportViaIoctl(dev, opts())).rejects.toThrow(/certificate buffer/);
    expect(dev.calls.length).toBe(1);
  });

  it("a missing device is a platform error naming sev-guest", async () => {
    const e = await requestReportViaIoctl(new FakeSevGuest({ pki }), {
      ...opts(),
      devicePath: path.join(dir, "nope"),
    }).catch((x) => x);
    expect(e.kind).toBe("platform");
    expect(e.hint).toMatch(/sev-guest/);
  });
});
