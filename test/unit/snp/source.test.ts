// The snp evidence source end to end inside the process: stand-in configfs-tsm (or stand-in
// /dev/sev-guest) → evidence JSON → JSON text on the wire → the test KBS's trustee-style verifier.
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { makeSnpSource } from "../../../platform/snp/source.ts";
import type { PlatformEnv } from "../../../platform/types.ts";
import { Deadline } from "../../../platform/util/deadline.ts";
import { createLogger } from "../../../platform/util/log.ts";
import { FakeTsm, type FakeTsmOptions } from "../../helpers/fake-tsm.ts";
import { FakeSevGuest, makeCertTable, snpProvider, testPki } from "../../helpers/snp-fixtures.ts";
import { verifySnpEvidence } from "../../kbs/verifiers/snp.ts";

const pki = testPki();
const anchors = { anchors: [{ arkPem: pki.arkPem, askPem: pki.askPem }] };
const digest = new Uint8Array(48).map((_, i) => 200 - i);
const fakes: FakeTsm[] = [];
afterEach(async () => {
  for (const f of fakes.splice(0)) await f.stop();
});

function start(o: Partial<FakeTsmOptions> & { version?: 3 | 5; certs?: boolean } = {}): FakeTsm {
  const f = FakeTsm.start({
    ...snpProvider(pki, {
      ...(o.version ? { version: o.version } : {}),
      ...(o.certs === false ? { certs: false } : {}),
    }),
    ...o,
  });
  fakes.push(f);
  return f;
}

function envFor(root: string, logs: string[] = []): PlatformEnv {
  return {
    paths: { root, tsmReport: path.join(root, "sys/kernel/config/tsm/report") },
    tpm: { spec: "/dev/tpmrm0", akHandle: 0x81010002 },
    azure: { metadataUrl: "http://169.254.169.254", legacyTeeNames: false },
    deadline: new Deadline(10_000),
    log: createLogger({ format: "text", verbose: true, write: (l) => void logs.push(l) }),
  };
}

const wire = (v: unknown) => JSON.parse(JSON.stringify(v));

describe("snp source via configfs-tsm (stand-in kernel)", () => {
  for (const version of [3, 5] as const) {
    it(`v${version}: evidence passes the trustee-style verifier, bound to digest ‖ zeros at VMPL 0`, async () => {
      const f = start({ version });
      const ev = await makeSnpSource().collect(envFor(f.root), { runtimeDigest: digest, tee: "snp" });
      expect(ev.tee).toBe("snp");
      expect(ev.timings?.["configfs-tsm"]).toBeGreaterThanOrEqual(0);
      const claims = verifySnpEvidence(wire(ev.primary), digest, anchors);
      expect(claims.report_data).toBe(Buffer.from([...digest, ...new Array(16).fill(0)]).toString("hex"));
      expect(f.requests.at(-1)!.privlevel).toBe(0);
      expect((wire(ev.primary) as { cert_chain: { cert_type: string }[] }).cert_chain.map((c) => c.cert_type)).toEqual([
        "VCEK",
        "ASK",
        "ARK",
      ]);
      expect(f.liveEntries()).toEqual([]);
    });
  }

  it("no auxblob → cert_chain null (trustee then needs its own VCEK source)", async () => {
    const f = start({ certs: false });
    const ev = wire((await makeSnpSource().collect(envFor(f.root), { runtimeDigest: digest, tee: "snp" })).primary);
    expect(ev.cert_chain).toBeNull();
    expect(verifySnpEvidence(ev, digest, { ...anchors, vcek: pki.vcekPem }).init_data).toBe("00".repeat(32));
  });

  it("a table without VCEK/VLEK becomes cert_chain null, with a warning", async () => {
    const f = start({ auxblobFor: () => makeCertTable(pki, ["ASK", "ARK"]) });
    const logs: string[] = [];
    const ev = wire(
      (await makeSnpSource().collect(envFor(f.root, logs), { runtimeDigest: digest, tee: "snp" })).primary,
    );
    expect(ev.cert_chain).toBeNull();
    expect(logs.join("")).toMatch(/no VCEK\/VLEK \(ASK, ARK\)/);
  });

  it("garbage auxblob is a ParseError naming the table entry", async () => {
    const f = start({ auxblobFor: () => makeCertTable(pki).map((x, i) => (i >= 16 && i < 24 ? 0xff : x)) });
    await expect(makeSnpSource().collect(envFor(f.root), { runtimeDigest: digest, tee: "snp" })).rejects.toThrow(
      /SNP certificate table: field 'entry\[0\] \(VCEK\)'.*outside/,
    );
  });

  it("a report for different data, or a short outblob, is refused", async () => {
    const other = snpProvider(pki);
    const f = start({
      outblobFor: (ib, ctx) =>
        other.outblobFor(
          ib.map((x) => x ^ 1),
          ctx,
        ),
    });
    await expect(makeSnpSource().collect(envFor(f.root), { runtimeDigest: digest, tee: "snp" })).rejects.toThrow(
      /not the .* we asked for/,
    );
    await f.stop();
    const g = start({ outblobFor: () => new Uint8Array(1000).fill(2) });
    await expect(makeSnpSource().collect(envFor(g.root), { runtimeDigest: digest, tee: "snp" })).rejects.toThrow(
      /1000 bytes, expected 1184/,
    );
  });

  it("a v2 report (older firmware) is refused with a hint, before the KBS would refuse it", async () => {
    const v2 = new Uint8Array(fs.readFileSync(path.resolve(__dirname, "../../fixtures/snp/trustee-test-report.bin")));
    const f = start({ outblobFor: () => v2 });
    const e = await makeSnpSource()
      .collect(envFor(f.root), { runtimeDigest: digest, tee: "snp" })
      .catch((x) => x);
    expect(e.message).toMatch(/version 2; trustee accepts 3..5/);
    expect(e.hint).toMatch(/firmware/);
  });

  it("a log line says so when the host's VCEK does not match the report", async () => {
    const logs: string[] = [];
    const f = start({
      auxblobFor: () =>
        makeCertTable({
          ...pki,
          vcekDer: new Uint8Array(fs.readFileSync(path.resolve(__dirname, "../../fixtures/snp/trustee-test-vcek.der"))),
        }),
    });
    await makeSnpSource().collect(envFor(f.root, logs), { runtimeDigest: digest, tee: "snp" });
    expect(logs.join("")).toMatch(/does not verify with the host-supplied VCEK/);
  });

  it("probe: present via configfs-tsm sev_guest; a tdx_guest provider is not SNP", async () => {
    const f = start();
    expect(await makeSnpSource().probe(envFor(f.root))).toMatchObject({
      status: "present",
      tee: "snp",
      details: { interface: "configfs-tsm" },
    });
    const g = start({ provider: "tdx_guest" });
    const p = await makeSnpSource().probe(envFor(g.root));
    expect(p.status).toBe("absent");
    expect(p.hint).toMatch(/sev-guest/);
  });
});

describe("snp source via /dev/sev-guest (stand-in driver)", () => {
  function ioctlRoot(): string {
    const root = fs.mkdtempSync(path.join(os.tmpdir(), "snp-dev-"));
    fs.mkdirSync(path.join(root, "dev"));
    fs.writeFileSync(path.join(root, "dev/sev-guest"), "");
    return root;
  }

  it("falls back to SNP_GET_EXT_REPORT when configfs-tsm is absent; evidence verifies", async () => {
    const root = ioctlRoot();
    const dev = new FakeSevGuest({ pki, version: 5 });
    const src = makeSnpSource({ ioctlDevice: async () => dev, minIntervalMs: 0 });
    expect(await src.probe(envFor(root))).toMatchObject({
      status: "present",
      details: { interface: "sev-guest-ioctl" },
    });
    const ev = await src.collect(envFor(root), { runtimeDigest: digest, tee: "snp" });
    expect(ev.timings?.["sev-guest-ioctl"]).toBeGreaterThanOrEqual(0);
    expect(verifySnpEvidence(wire(ev.primary), digest, anchors).reported_tcb_snp).toBe("8");
    expect(dev.calls.map((c) => c.outcome)).toEqual(["ok"]);
    fs.rmSync(root, { recursive: true });
  });

  it("falls back to SNP_GET_REPORT when the kernel rejects the extended request", async () => {
    const root = ioctlRoot();
    const dev = new FakeSevGuest({ pki, extUnsupported: true });
    const ev = await makeSnpSource({ ioctlDevice: async () => dev, minIntervalMs: 0 }).collect(envFor(root), {
      runtimeDigest: digest,
      tee: "snp",
    });
    expect(wire(ev.primary).cert_chain).toBeNull();
    expect(dev.calls.map((c) => c.outcome)).toEqual(["ext unsupported", "ok"]);
    fs.rmSync(root, { recursive: true });
  });

  it("without bun:ffi (node) the error says what is missing", async () => {
    const root = ioctlRoot();
    await expect(makeSnpSource().collect(envFor(root), { runtimeDigest: digest, tee: "snp" })).rejects.toThrow(
      /bun runtime/,
    );
    fs.rmSync(root, { recursive: true });
  });

  it("nothing at all is absent; the SNP platform device without a report interface is broken", async () => {
    const root = fs.mkdtempSync(path.join(os.tmpdir(), "snp-none-"));
    const p = await makeSnpSource().probe(envFor(root));
    expect(p).toMatchObject({ status: "absent" });
    expect(p.hint).toMatch(/sev-guest/);
    const e = await makeSnpSource()
      .collect(envFor(root), { runtimeDigest: digest, tee: "snp" })
      .catch((x) => x);
    expect(e.kind).toBe("platform");
    fs.mkdirSync(path.join(root, "sys/devices/platform/sev-guest"), { recursive: true });
    expect(await makeSnpSource().probe(envFor(root))).toMatchObject({
      status: "broken",
      hint: expect.stringMatching(/modprobe sev-guest/),
      details: { interface: "none" },
    });
    fs.rmSync(root, { recursive: true });
  });
});
