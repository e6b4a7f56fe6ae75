// Azure paravisor vTPM evidence (az-snp-vtpm / az-tdx-vtpm) end to end: swtpm provisioned like an
// Azure vTPM behind the paravisor stand-in proxy (test/helpers/azure-vtpm.ts), a fake metadata
// service, the trustee-faithful test KBS with the az-* verifiers, and the compiled binary.
import * as crypto from "node:crypto";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { REPORT_DATA_NV_INDEX } from "../../platform/azure/constants.ts";
import { makeAzureVtpmSource } from "../../platform/azure/source.ts";
import { withTpm } from "../../platform/tpm/client.ts";
import { TPMA_NV, TPM_ALG } from "../../platform/tpm/constants.ts";
import { nvDefine, nvReadPublicIfPresent, nvUndefine, nvWrite, pcrExtend } from "../../platform/tpm/operations.ts";
import type { PlatformEnv } from "../../platform/types.ts";
import { Deadline } from "../../platform/util/deadline.ts";
import { EXIT_CODES } from "../../platform/util/errors.ts";
import { silentLogger } from "../../platform/util/log.ts";
import { startFakeMetadata, type FakeMetadata } from "../helpers/azure-metadata.ts";
import { TD_REPORT_DATA_OFFSET, TD_REPORT_MRTD_OFFSET } from "../helpers/azure-hcl.ts";
import { startAzureVtpm, type AzureVtpm } from "../helpers/azure-vtpm.ts";
import { ensureBinary, runCli, type RunResult } from "../helpers/binary.ts";
import { createPki, type Pki } from "../helpers/pki.ts";
import { makeTdxQuote } from "../helpers/tdx-fixtures.ts";
import { startTestKbs, type TestKbs } from "../kbs/server.ts";
import { makeAzSnpVtpmVerifier } from "../kbs/verifiers/az-snp-vtpm.ts";
import { makeAzTdxVtpmVerifier } from "../kbs/verifiers/az-tdx-vtpm.ts";
import type { TeeVerifier } from "../kbs/verifiers/types.ts";

const RESOURCE = "default/key/root";
const azureVtpmSource = makeAzureVtpmSource();
const SECRET = crypto.randomBytes(32);

let tls: Pki;
let work: string;
let emptyRoot: string;

beforeAll(() => {
  ensureBinary();
  tls = createPki();
  work = fs.mkdtempSync(path.join(os.tmpdir(), "azure-it-"));
  emptyRoot = path.join(work, "root");
  fs.mkdirSync(emptyRoot);
});
afterAll(() => fs.rmSync(work, { recursive: true, force: true }));

interface Stand {
  vtpm: AzureVtpm;
  md: FakeMetadata;
  kbs: TestKbs;
  stop(): Promise<void>;
}

function tdQuoteFor(tdReport: Uint8Array): Uint8Array {
  return makeTdxQuote({
    version: 4,
    reportData: tdReport.slice(TD_REPORT_DATA_OFFSET, TD_REPORT_DATA_OFFSET + 64),
    mrTd: tdReport.slice(TD_REPORT_MRTD_OFFSET, TD_REPORT_MRTD_OFFSET + 48),
  });
}

async function stand(tee: "snp" | "tdx", legacy = false): Promise<Stand> {
  const vtpm = await startAzureVtpm({ tee });
  const md = await startFakeMetadata({
    vcekPem: vtpm.pki.vcekPem,
    chainPem: vtpm.pki.askPem + vtpm.pki.arkPem,
    tdQuote: tdQuoteFor,
  });
  const chains = [vtpm.pki.askPem + "\n" + vtpm.pki.arkPem];
  const verifiers: Record<string, TeeVerifier> = legacy
    ? {
        azsnpvtpm: makeAzSnpVtpmVerifier({ tee: "azsnpvtpm", trustedChains: chains }),
        aztdxvtpm: makeAzTdxVtpmVerifier("aztdxvtpm"),
      }
    : { "az-snp-vtpm": makeAzSnpVtpmVerifier({ trustedChains: chains }), "az-tdx-vtpm": makeAzTdxVtpmVerifier() };
  const kbs = await startTestKbs({
    tls: tls.tls,
    resources: { [RESOURCE]: SECRET },
    verifiers,
    ...(legacy ? { legacyAzureNames: true } : {}),
  });
  return {
    vtpm,
    md,
    kbs,
    async stop() {
      await kbs.close();
      await md.close();
      await vtpm.stop();
    },
  };
}

function env(s: Stand, deadlineMs = 60_000, legacy = false): PlatformEnv {
  return {
    paths: { root: emptyRoot, tsmReport: path.join(emptyRoot, "sys/kernel/config/tsm/report") },
    tpm: { spec: s.vtpm.spec, akHandle: 0x81010002 },
    azure: { metadataUrl: s.md.url, legacyTeeNames: legacy },
    deadline: new Deadline(deadlineMs),
    log: silentLogger,
  };
}

function configFile(extra: Record<string, unknown> = {}): string {
  const file = path.join(work, `config-${crypto.randomBytes(4).toString("hex")}.json`);
  fs.writeFileSync(file, JSON.stringify({ kbs: { request_timeout_s: 10 }, ...extra }));
  return file;
}

function cli(
  cmd: string[],
  s: Stand,
  o: { tee?: string; deadline?: number; config?: Record<string, unknown> } = {},
): Promise<RunResult> {
  return runCli(
    [
      ...cmd,
      "--kbs",
      s.kbs.url,
      "--ca",
      tls.caFile,
      ...(o.tee ? ["--tee", o.tee] : []),
      "--tpm",
      s.vtpm.spec,
      "--azure-metadata-url",
      s.md.url,
      "--platform-root",
      emptyRoot,
      "--deadline",
      String(o.deadline ?? 60),
      "--config",
      configFile(o.config),
    ],
    { timeoutMs: 110_000 },
  );
}

function expectSecret(r: RunResult): void {
  expect(r.stderr, "stderr").not.toContain(SECRET.toString("hex"));
  expect(r.code, r.stderr).toBe(0);
  expect(r.stdout.equals(SECRET)).toBe(true);
}

describe("az-snp-vtpm", () => {
  let s: Stand;
  beforeAll(async () => {
    s = await stand("snp");
  });
  afterAll(() => s?.stop());

  it("source in-process: probe says az-snp-vtpm; collect writes the digest, waits for the refreshed report, and the verifier accepts", async () => {
    const e = env(s);
    const probe = await azureVtpmSource.probe(e);
    expect(probe).toMatchObject({ status: "present", tee: "az-snp-vtpm" });
    const digest = crypto.randomBytes(48);
    const ev = await azureVtpmSource.collect(e, { runtimeDigest: digest, tee: "az-snp-vtpm" });
    expect(s.vtpm.writesSeen.at(-1)).toBe(digest.toString("hex"));
    const primary = ev.primary as Record<string, any>;
    expect(Object.keys(primary)).toEqual(["version", "tpm_quote", "hcl_report", "vcek"]);
    expect(primary.version).toBe(2);
    expect(primary.tpm_quote.signature).toMatch(/^[0-9a-f]{512}$/);
    expect(primary.tpm_quote.pcrs).toHaveLength(24);
    expect(primary.hcl_report).toMatch(/^[A-Za-z0-9_-]+=*$/);
    expect(primary.hcl_report.length % 4).toBe(0);
    expect(Buffer.from(primary.vcek, "base64url").equals(Buffer.from(s.vtpm.pki.vcekDer))).toBe(true);
    expect(Object.keys(ev.timings ?? {})).toEqual(
      expect.arrayContaining(["azure-nv-write", "azure-hcl-wait", "azure-quote", "azure-vcek"]),
    );
    const v = makeAzSnpVtpmVerifier({ trustedChains: [s.vtpm.pki.askPem + s.vtpm.pki.arkPem] });
    const claims = await v.verify(primary, digest, { tee: "az-snp-vtpm", initData: null, nonce: "x" });
    expect(claims.report_data).toBe(digest.toString("hex"));
    // A different digest (a replay of this evidence for another session) is refused.
    expect(() => v.verify(primary, crypto.randomBytes(48), { tee: "az-snp-vtpm", initData: null, nonce: "x" })).toThrow(
      /nonce/,
    );
    e.deadline.dispose();
  });

  it.each([
    ["an existing larger index (zero-filled past the digest)", 64],
    ["an existing too-small index (redefined)", 16],
  ])("source in-process: report data goes into %s", async (_name, size) => {
    const e = env(s);
    // Swap the report-data index for one of `size` bytes, straight on swtpm (the proxy holds the
    // only data connection, so go through the proxy like any guest would).
    await withTpm(s.vtpm.spec, e.deadline, silentLogger, async (tpm) => {
      if (await nvReadPublicIfPresent(tpm, REPORT_DATA_NV_INDEX)) await nvUndefine(tpm, REPORT_DATA_NV_INDEX);
      await nvDefine(tpm, { index: REPORT_DATA_NV_INDEX, size, attributes: TPMA_NV.OWNERWRITE | TPMA_NV.OWNERREAD });
      await nvWrite(tpm, REPORT_DATA_NV_INDEX, new Uint8Array(size).fill(0xee));
    });
    const digest = crypto.randomBytes(48);
    const ev = await azureVtpmSource.collect(e, { runtimeDigest: digest, tee: "az-snp-vtpm" });
    const expected = size >= 48 ? Buffer.concat([digest, Buffer.alloc(size - 48)]) : digest;
    expect(s.vtpm.writesSeen.at(-1)).toBe(expected.toString("hex"));
    const size2 = await withTpm(
      s.vtpm.spec,
      e.deadline,
      silentLogger,
      async (tpm) => (await nvReadPublicIfPresent(tpm, REPORT_DATA_NV_INDEX))!.dataSize,
    );
    expect(size2).toBe(Math.max(size, 48));
    const v = makeAzSnpVtpmVerifier({ trustedChains: [s.vtpm.pki.askPem + s.vtpm.pki.arkPem] });
    await v.verify(ev.primary, digest, { tee: "az-snp-vtpm", initData: null, nonce: "x" });
    e.deadline.dispose();
  });

  it("source in-process: PCR8 carries init-data the way the verifier checks it (SHA-256(0^32 ‖ digest))", async () => {
    const e = env(s);
    const initDigest = crypto.createHash("sha256").update('version = "0.1.0"\n').digest();
    await withTpm(s.vtpm.spec, e.deadline, silentLogger, (tpm) =>
      pcrExtend(tpm, 8, [{ hashAlg: TPM_ALG.SHA256, digest: initDigest }]),
    );
    const digest = crypto.randomBytes(48);
    const ev = await azureVtpmSource.collect(e, { runtimeDigest: digest, tee: "az-snp-vtpm" });
    const v = makeAzSnpVtpmVerifier({ trustedChains: [s.vtpm.pki.askPem + s.vtpm.pki.arkPem] });
    const init = (d: Uint8Array) => ({ body: "", algorithm: "sha256", digest: d }) as any;
    const claims = await v.verify(ev.primary, digest, { tee: "az-snp-vtpm", initData: init(initDigest), nonce: "x" });
    expect(claims.init_data).toBe(
      crypto
        .createHash("sha256")
        .update(Buffer.concat([Buffer.alloc(32), initDigest]))
        .digest("hex"),
    );
    expect(() =>
      v.verify(ev.primary, digest, { tee: "az-snp-vtpm", initData: init(crypto.randomBytes(32)), nonce: "x" }),
    ).toThrow(/PCR8/);
    e.deadline.dispose();
  });

  it("binary: fetch --tee az-snp-vtpm releases the secret", async () => {
    const r = await cli(["fetch", RESOURCE], s, { tee: "az-snp-vtpm" });
    expectSecret(r);
  });

  it("binary: a KBS whose verifier does not trust the test VCEK's ARK refuses (evidence really is checked)", async () => {
    const strict = await startTestKbs({
      tls: tls.tls,
      resources: { [RESOURCE]: SECRET },
      verifiers: { "az-snp-vtpm": makeAzSnpVtpmVerifier() },
    });
    try {
      const r = await runCli(
        [
          "fetch",
          RESOURCE,
          "--kbs",
          strict.url,
          "--ca",
          tls.caFile,
          "--tee",
          "az-snp-vtpm",
          "--tpm",
          s.vtpm.spec,
          "--azure-metadata-url",
          s.md.url,
          "--platform-root",
          emptyRoot,
          "--deadline",
          "60",
          "--config",
          configFile({ kbs: { request_timeout_s: 10, resource_attempts: 1 } }),
        ],
        { timeoutMs: 110_000 },
      );
      expect(r.stdout.length).toBe(0);
      expect(r.code, r.stderr).toBe(EXIT_CODES["kbs-refused"]);
    } finally {
      await strict.close();
    }
  });

  it("binary: detect picks azure-vtpm over the plain tpm source when the HCL index is present", async () => {
    const r = await cli(["detect", "--json"], s);
    expect(r.code, r.stderr).toBe(0);
    const out = JSON.parse(r.stdout.toString());
    expect(out.chosen).toEqual({ source: "azure-vtpm", tee: "az-snp-vtpm" });
    const tpm = out.candidates.find((c: any) => c.source === "tpm");
    expect(tpm, JSON.stringify(out.candidates)).toMatchObject({ present: true, chosen: false });
    expect(out.candidates.map((c: any) => c.source).indexOf("azure-vtpm")).toBeLessThan(
      out.candidates.map((c: any) => c.source).indexOf("tpm"),
    );
  });

  it("binary: auto-detected fetch (no --tee) attests as az-snp-vtpm", async () => {
    const r = await cli(["fetch", RESOURCE], s);
    expectSecret(r);
    expect(r.stderr).toMatch(/az-snp-vtpm/);
  });

  it("binary: a paravisor that never refreshes the HCL report fails with a clear timeout error within the deadline", async () => {
    s.vtpm.setRefresh({ kind: "never" });
    try {
      const r = await cli(["fetch", RESOURCE], s, { tee: "az-snp-vtpm", deadline: 30 });
      expect(r.stdout.length).toBe(0);
      expect(r.code).toBe(EXIT_CODES.evidence);
      expect(r.stderr).toMatch(/did not pick up the report data written to NV 0x01400002 within \d+ ms/);
      expect(r.durationMs).toBeLessThan(25_000);
    } finally {
      s.vtpm.setRefresh({ kind: "immediate" });
    }
  });

  it("binary: a slow paravisor (refresh after 1.5 s) is waited for by polling", async () => {
    s.vtpm.setRefresh({ kind: "delayed", ms: 1500 });
    try {
      const r = await cli(["fetch", RESOURCE], s, { tee: "az-snp-vtpm" });
      expectSecret(r);
    } finally {
      s.vtpm.setRefresh({ kind: "immediate" });
    }
  });

  it("binary: a metadata service answering garbage fails closed with a parse error", async () => {
    s.md.setFault("garbage");
    try {
      const r = await cli(["fetch", RESOURCE], s, { tee: "az-snp-vtpm" });
      expect(r.stdout.length).toBe(0);
      expect(r.code).toBe(EXIT_CODES.evidence);
      expect(r.stderr).toMatch(/metadata.*not JSON/);
    } finally {
      s.md.setFault("none");
    }
  });

  it("binary: a metadata service that never answers is bounded", async () => {
    s.md.setFault("slow");
    try {
      const r = await cli(["fetch", RESOURCE], s, { tee: "az-snp-vtpm", deadline: 8 });
      expect(r.stdout.length).toBe(0);
      expect(r.code === EXIT_CODES.deadline || r.code === EXIT_CODES.platform).toBe(true);
      expect(r.durationMs).toBeLessThan(15_000);
    } finally {
      s.md.setFault("none");
    }
  });

  it("binary: an HCL report with bad sizes is refused with the field and offset", async () => {
    const blob = new Uint8Array(s.vtpm.nvSize);
    const v = new DataView(blob.buffer);
    v.setUint32(0, 0x414c4348, true);
    v.setUint32(8, 99_999, true); // report_size beyond the NV area
    await s.vtpm.setHclBlob(blob);
    try {
      const r = await cli(["fetch", RESOURCE], s, { tee: "az-snp-vtpm" });
      expect(r.stdout.length).toBe(0);
      expect(r.code).not.toBe(0);
      expect(r.stderr).toMatch(/HCL report: field 'report_size' at offset 8/);
    } finally {
      await s.vtpm.resetHcl();
    }
  });
});

describe("az-tdx-vtpm", () => {
  let s: Stand;
  beforeAll(async () => {
    s = await stand("tdx");
  });
  afterAll(() => s?.stop());

  it("binary: fetch --tee az-tdx-vtpm releases the secret (TD quote from the metadata service)", async () => {
    const r = await cli(["fetch", RESOURCE], s, { tee: "az-tdx-vtpm" });
    expectSecret(r);
    const posts = s.md.requests.filter((q) => q.path === "/acc/tdquote");
    expect(posts.length).toBe(1);
    expect(posts[0]!.metadataHeader).toBe("true");
  });

  it("binary: --tee az-snp-vtpm on a TDX CVM is refused, naming what is there", async () => {
    const r = await cli(["fetch", RESOURCE], s, { tee: "az-snp-vtpm" });
    expect(r.code).toBe(EXIT_CODES.platform);
    expect(r.stderr).toMatch(/az-tdx-vtpm/);
  });
});

describe("legacy tee names (trustee v0.14–v0.15)", () => {
  let s: Stand;
  beforeAll(async () => {
    s = await stand("snp", true);
  });
  afterAll(() => s?.stop());

  it("binary: with azure_legacy_tee_names the agent attests as azsnpvtpm", async () => {
    const r = await cli(["fetch", RESOURCE], s, {
      tee: "az-snp-vtpm",
      config: { platform: { azure_legacy_tee_names: true } },
    });
    expectSecret(r);
    expect(r.stderr).toMatch(/azsnpvtpm/);
  });
});
