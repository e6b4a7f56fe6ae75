// The tdx evidence source against a stand-in configfs-tsm kernel, checked by the test KBS verifier.
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import * as zlib from "node:zlib";
import { afterEach, describe, expect, it } from "vitest";
import { sha384 } from "@noble/hashes/sha2.js";
import { makeTdxSource } from "../../../platform/tdx/source.ts";
import { parseTdxQuote } from "../../../platform/tdx/quote.ts";
import { verifyQuoteSignature } from "../../../platform/tdx/signature.ts";
import type { PlatformEnv } from "../../../platform/types.ts";
import { Deadline } from "../../../platform/util/deadline.ts";
import { createLogger, silentLogger } from "../../../platform/util/log.ts";
import { CvmError, ParseError } from "../../../platform/util/errors.ts";
import { concat, fitTo, fromB64, hex, utf8 } from "../../../platform/util/bytes.ts";
import { FakeTsm } from "../../helpers/fake-tsm.ts";
import { installCcel, makeCcel, makeTdxQuote, tdxOutblobFor } from "../../helpers/tdx-fixtures.ts";
import { verifyTdxEvidence } from "../../kbs/verifiers/tdx.ts";
import { encodeEventLog } from "../../../platform/eventlog/encode.ts";
import { TPM_ALG_SHA384 } from "../../../platform/eventlog/algorithms.ts";

const tdxSource = makeTdxSource();
const running: FakeTsm[] = [];
const dirs: string[] = [];
afterEach(async () => {
  for (const f of running.splice(0)) await f.stop();
  for (const d of dirs.splice(0)) fs.rmSync(d, { recursive: true, force: true });
});

function envFor(root: string, log = silentLogger): PlatformEnv {
  return {
    paths: { root, tsmReport: path.join(root, "sys/kernel/config/tsm/report") },
    tpm: { spec: "/dev/tpmrm0", akHandle: 0x81010002 },
    azure: { metadataUrl: "http://127.0.0.1:9", legacyTeeNames: false },
    deadline: new Deadline(20_000),
    log,
  };
}

function tdxGuest(opts: {
  version: 4 | 5;
  ccel?: ReturnType<typeof makeCcel>;
  outblobFor?: (inblob: Uint8Array) => Uint8Array;
  provider?: string;
}) {
  const rtmrs = opts.ccel?.rtmrs;
  const f = FakeTsm.start({
    provider: opts.provider ?? "tdx_guest",
    outblobFor: opts.outblobFor ?? tdxOutblobFor({ version: opts.version, ...(rtmrs ? { rtmrs } : {}) }),
  });
  running.push(f);
  if (opts.ccel) installCcel(f.root, opts.ccel);
  return f;
}

const digest = sha384(utf8("runtime data"));

describe("tdx source", () => {
  for (const version of [4, 5] as const) {
    it(`collects a v${version} quote + CCEL that the test KBS verifier accepts`, async () => {
      const ccel = makeCcel();
      const f = tdxGuest({ version, ccel });
      const env = envFor(f.root);
      const probe = await tdxSource.probe(env);
      expect(probe).toMatchObject({ status: "present", tee: "tdx" });
      const ev = await tdxSource.collect(env, { runtimeDigest: digest, tee: "tdx" });
      expect(ev.tee).toBe("tdx");
      const primary = ev.primary as { cc_eventlog: string; quote: string };
      expect(Object.keys(primary).sort()).toEqual(["cc_eventlog", "quote"]);
      // The wire event log is the trimmed log plus guest-components' 8×0xFF end flag.
      const el = fromB64(primary.cc_eventlog);
      expect(el.length).toBe(ccel.logLength + 8);
      expect(hex(el.subarray(0, ccel.logLength))).toBe(hex(ccel.area.subarray(0, ccel.logLength)));
      expect(hex(el.subarray(-8))).toBe("ff".repeat(8));
      const q = parseTdxQuote(fromB64(primary.quote));
      expect(q.header.version).toBe(version);
      expect(hex(q.body.reportData)).toBe(hex(concat(digest, new Uint8Array(16))));
      expect(f.requests).toHaveLength(1);
      expect(hex(f.requests[0]!.inblob)).toBe(hex(fitTo(digest, 64)));
      expect(f.liveEntries()).toEqual([]);
      const claims = verifyTdxEvidence(ev.primary, digest) as Record<string, unknown>;
      expect((claims.uefi_event_logs as unknown[]).length).toBe(7);
      expect(claims.report_data).toBe(hex(fitTo(digest, 64)));
    });
  }

  it("sends cc_eventlog null when the firmware published no CCEL", async () => {
    const f = tdxGuest({ version: 4 });
    const ev = await tdxSource.collect(envFor(f.root), { runtimeDigest: digest, tee: "tdx" });
    expect((ev.primary as { cc_eventlog: unknown }).cc_eventlog).toBeNull();
    verifyTdxEvidence(ev.primary, digest);
  });

  it("drops padding after the signature data from the quote it sends", async () => {
    const f = tdxGuest({
      version: 4,
      outblobFor: (inblob) => makeTdxQuote({ version: 4, reportData: inblob, trailing: 3000 }),
    });
    const ev = await tdxSource.collect(envFor(f.root), { runtimeDigest: digest, tee: "tdx" });
    expect(parseTdxQuote(fromB64((ev.primary as { quote: string }).quote)).trailing).toBe(0);
  });

  it("fails closed when the host returns a quote for other REPORTDATA", async () => {
    const f = tdxGuest({
      version: 4,
      outblobFor: () => makeTdxQuote({ version: 4, reportData: new Uint8Array(64).fill(7) }),
    });
    await expect(tdxSource.collect(envFor(f.root), { runtimeDigest: digest, tee: "tdx" })).rejects.toThrow(
      /REPORTDATA/,
    );
  });

  it("fails closed on a quote whose signature does not verify", async () => {
    const f = tdxGuest({
      version: 4,
      outblobFor: (inblob) => {
        const q = makeTdxQuote({ version: 4, reportData: inblob });
        q[0x30 + 0x88] = q[0x30 + 0x88]! ^ 1; // MRTD changed after signing
        return q;
      },
    });
    await expect(tdxSource.collect(envFor(f.root), { runtimeDigest: digest, tee: "tdx" })).rejects.toThrow(/signature/);
  });

  it("fails closed on a garbage outblob (ParseError naming the field)", async () => {
    const f = tdxGuest({ version: 4, outblobFor: () => new Uint8Array(100).fill(4) });
    await expect(tdxSource.collect(envFor(f.root), { runtimeDigest: digest, tee: "tdx" })).rejects.toBeInstanceOf(
      ParseError,
    );
  });

  it("fails closed on a malformed CCEL", async () => {
    const ccel = makeCcel();
    ccel.area[40] = ccel.area[40]! ^ 0xff; // inside the Spec ID event
    const f = tdxGuest({ version: 4, ccel });
    await expect(tdxSource.collect(envFor(f.root), { runtimeDigest: digest, tee: "tdx" })).rejects.toBeInstanceOf(
      ParseError,
    );
  });

  it("warns (and the verifier refuses) when the CCEL does not replay to the quote's RTMRs", async () => {
    const f = tdxGuest({ version: 5, ccel: makeCcel(), outblobFor: tdxOutblobFor({ version: 5 }) });
    const lines: string[] = [];
    const env = envFor(f.root, createLogger({ format: "text", verbose: false, write: (l) => lines.push(l) }));
    const ev = await tdxSource.collect(env, { runtimeDigest: digest, tee: "tdx" });
    expect(lines.join("")).toMatch(/does not replay to the quote's RTMR0, RTMR1, RTMR2/);
    expect(() => verifyTdxEvidence(ev.primary, digest)).toThrow(/replays RTMR0/);
  });

  it("refuses a configfs-tsm entry whose provider is not tdx_guest", async () => {
    const f = tdxGuest({ version: 4, provider: "sev_guest" });
    const env = envFor(f.root);
    expect(await tdxSource.probe(env)).toMatchObject({ status: "absent", reason: expect.stringMatching(/sev_guest/) });
    await expect(tdxSource.collect(env, { runtimeDigest: digest, tee: "tdx" })).rejects.toThrow(
      /provider is 'sev_guest'/,
    );
  });

  it("probe: nothing is absent; a TD detected by cpu flag or /dev/tdx_guest without configfs-tsm is broken", async () => {
    const root = fs.mkdtempSync(path.join(os.tmpdir(), "tdx-probe-"));
    dirs.push(root);
    const none = await tdxSource.probe(envFor(root));
    expect(none.status).toBe("absent");
    expect(none.hint).toMatch(/tdx-guest/);
    fs.mkdirSync(path.join(root, "proc"));
    fs.writeFileSync(path.join(root, "proc/cpuinfo"), "processor\t: 0\nflags\t\t: fpu tsc tdx_guest x2apic\n");
    const cpu = await tdxSource.probe(envFor(root));
    expect(cpu).toMatchObject({
      status: "broken",
      reason: expect.stringMatching(/driver is not loaded/),
      hint: expect.stringMatching(/modprobe tdx-guest/),
    });
    fs.mkdirSync(path.join(root, "dev"));
    fs.writeFileSync(path.join(root, "dev/tdx_guest"), "");
    const dev = await tdxSource.probe(envFor(root));
    expect(dev).toMatchObject({ status: "broken", reason: expect.stringMatching(/configfs-tsm is not/) });
    expect(dev.tee).toBeUndefined();
    await expect(tdxSource.collect(envFor(root), { runtimeDigest: digest, tee: "tdx" })).rejects.toBeInstanceOf(
      CvmError,
    );
  });
});

describe("test KBS tdx verifier", () => {
  const ccel = makeCcel();
  const good = (version: 4 | 5, rd = fitTo(digest, 64)) => ({
    cc_eventlog: Buffer.from(concat(ccel.area.subarray(0, ccel.logLength), new Uint8Array(8).fill(0xff))).toString(
      "base64",
    ),
    quote: Buffer.from(makeTdxQuote({ version, reportData: rd, rtmrs: ccel.rtmrs })).toString("base64"),
  });

  it("generated quotes carry a valid ECDSA-P256 quote signature", () => {
    for (const v of [4, 5] as const)
      expect(verifyQuoteSignature(parseTdxQuote(makeTdxQuote({ version: v, reportData: new Uint8Array(64) })))).toBe(
        true,
      );
  });

  it("accepts good evidence, v4 and v5", () => {
    expect(() => verifyTdxEvidence(good(4), digest)).not.toThrow();
    expect(() => verifyTdxEvidence(good(5), digest)).not.toThrow();
  });

  it("refuses another digest, a forged signature, a bad event log, bad base64, missing quote", () => {
    expect(() => verifyTdxEvidence(good(4), sha384(utf8("other")))).toThrow(/REPORTDATA/);
    const forged = Buffer.from(makeTdxQuote({ version: 4, reportData: fitTo(digest, 64), rtmrs: ccel.rtmrs }));
    forged[0x30 + 0x88] = forged[0x30 + 0x88]! ^ 1;
    expect(() => verifyTdxEvidence({ ...good(4), quote: forged.toString("base64") }, digest)).toThrow(/signature/);
    const otherLog = makeCcel({ label: "other firmware" });
    expect(() =>
      verifyTdxEvidence({ ...good(4), cc_eventlog: Buffer.from(otherLog.area).toString("base64") }, digest),
    ).toThrow(/RTMR0/);
    expect(() => verifyTdxEvidence({ ...good(4), quote: "not base64!" }, digest)).toThrow(/base64/);
    expect(() => verifyTdxEvidence({ cc_eventlog: null }, digest)).toThrow(/quote/);
    expect(() => verifyTdxEvidence([], digest)).toThrow(/object/);
  });

  it("replays like trustee: EV_NO_ACTION in an RTMR is extended; unknown event types are refused", () => {
    const spec = {
      platformClass: 0,
      specErrata: 0,
      uintnSize: 2,
      algorithms: [{ id: TPM_ALG_SHA384, name: "sha384", size: 48 }],
      vendorInfo: new Uint8Array(),
    };
    const d = sha384(utf8("x"));
    const noAction = encodeEventLog(spec, [
      { index: 1, type: 3, digests: new Map([[TPM_ALG_SHA384, d]]), data: new Uint8Array(4) },
    ]);
    const rtmr0 = sha384(concat(new Uint8Array(48), d));
    const ev = (log: Uint8Array, rtmrs: Uint8Array[]) => ({
      cc_eventlog: Buffer.from(log).toString("base64"),
      quote: Buffer.from(makeTdxQuote({ version: 4, reportData: fitTo(digest, 64), rtmrs })).toString("base64"),
    });
    const zero = new Uint8Array(48);
    expect(() => verifyTdxEvidence(ev(noAction, [rtmr0, zero, zero, zero]), digest)).not.toThrow();
    expect(() => verifyTdxEvidence(ev(noAction, [zero, zero, zero, zero]), digest)).toThrow(/RTMR0/);
    const odd = encodeEventLog(spec, [
      { index: 1, type: 0x1234, digests: new Map([[TPM_ALG_SHA384, d]]), data: new Uint8Array() },
    ]);
    expect(() => verifyTdxEvidence(ev(odd, [rtmr0, zero, zero, zero]), digest)).toThrow(/Unknown event type/);
  });

  it("checks MRCONFIGID against the init-data digest", () => {
    const initDigest = sha384(utf8("init data"));
    const ev = {
      cc_eventlog: null,
      quote: Buffer.from(makeTdxQuote({ version: 4, reportData: fitTo(digest, 64), mrConfigId: initDigest })).toString(
        "base64",
      ),
    };
    const initData = { body: "x", algorithm: "sha384" as const, digest: initDigest };
    expect(() => verifyTdxEvidence(ev, digest, { initData })).not.toThrow();
    expect(() => verifyTdxEvidence(ev, digest, { initData: { ...initData, digest: sha384(utf8("other")) } })).toThrow(
      /MRCONFIGID/,
    );
  });

  it("accepts the real quote + CCEL pair from go-tdx-guest (REPORTDATA = zeros)", () => {
    const dir = path.join(import.meta.dirname, "../../fixtures/tdx");
    const area = new Uint8Array(zlib.gunzipSync(fs.readFileSync(path.join(dir, "ccel_data.dat.gz"))));
    const ev = {
      cc_eventlog: Buffer.from(area).toString("base64"),
      quote: fs.readFileSync(path.join(dir, "cos-113-tdx-quote.dat")).toString("base64"),
    };
    const claims = verifyTdxEvidence(ev, new Uint8Array(48)) as Record<string, unknown>;
    expect((claims.uefi_event_logs as unknown[]).length).toBe(43);
  });
});
