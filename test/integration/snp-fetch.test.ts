// dist/cvm-unlock fetch --tee snp through the stand-in configfs-tsm kernel, against the test KBS with
// the trustee-style snp verifier. The binary does the real configfs protocol (mkdir, inblob,
// privlevel, generation checks, auxblob/outblob, rmdir) on the stand-in tree.
import { spawn } from "node:child_process";
import * as crypto from "node:crypto";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { EXIT_CODES } from "../../platform/util/errors.ts";
import { BINARY, ensureBinary, runCli, type RunResult } from "../helpers/binary.ts";
import { FakeTsm } from "../helpers/fake-tsm.ts";
import { createPki, type Pki } from "../helpers/pki.ts";
import {
  makeTestPki,
  signReport,
  snpProvider,
  testPki,
  unsignedReport,
  type TestPki,
} from "../helpers/snp-fixtures.ts";
import { encodeSnpReport } from "../../platform/snp/report.ts";
import { startTestKbs, type TestKbs } from "../kbs/server.ts";
import { makeSnpVerifier } from "../kbs/verifiers/snp.ts";

const RESOURCE = "default/key/root";
const SECRET = crypto.randomBytes(32);
let tls: Pki;
let snp: TestPki;
let kbs: TestKbs | undefined;
let fake: FakeTsm | undefined;
let empty: string;

beforeAll(() => {
  ensureBinary();
  tls = createPki();
  snp = testPki();
  empty = fs.mkdtempSync(path.join(os.tmpdir(), "snp-empty-root-"));
});
afterEach(async () => {
  await kbs?.close();
  await fake?.stop();
  kbs = fake = undefined;
});
afterAll(() => fs.rmSync(empty, { recursive: true, force: true }));

async function startKbs(anchor: TestPki = snp): Promise<TestKbs> {
  kbs = await startTestKbs({
    tls: tls.tls,
    resources: { [RESOURCE]: SECRET },
    verifiers: { snp: makeSnpVerifier({ anchors: [{ arkPem: anchor.arkPem, askPem: anchor.askPem }] }) },
  });
  return kbs;
}

function fetchSnp(root: string): Promise<RunResult> {
  return runCli(
    [
      "fetch",
      RESOURCE,
      "--tee",
      "snp",
      "--platform-root",
      root,
      "--kbs",
      kbs!.url,
      "--ca",
      tls.caFile,
      "--deadline",
      "60",
    ],
    { timeoutMs: 90_000 },
  );
}

function expectNoLeak(r: RunResult): void {
  for (const enc of ["hex", "base64", "base64url"] as const) expect(r.stderr).not.toContain(SECRET.toString(enc));
}

describe("cvm-unlock fetch --tee snp (stand-in configfs-tsm)", () => {
  for (const version of [3, 5] as const) {
    it(`v${version} report: attests, releases the secret, leaves no configfs entry`, async () => {
      fake = FakeTsm.start(snpProvider(snp, { version }));
      await startKbs();
      const r = await fetchSnp(fake.root);
      expect(r.stderr).not.toMatch(/error/i);
      expect(r.code).toBe(0);
      expect(Buffer.compare(r.stdout, SECRET)).toBe(0);
      expectNoLeak(r);
      expect(fake.liveEntries()).toEqual([]);
      const req = fake.requests.at(-1)!;
      expect(req.privlevel).toBe(0);
      expect(Array.from(req.inblob.subarray(48))).toEqual(new Array(16).fill(0)); // digest ‖ 16 zeros
      expect(kbs!.stats.attested).toBe(1);
      expect(kbs!.stats.released).toBe(1);
    });
  }

  it("SIGTERM while the platform is producing the report still removes the configfs entry", async () => {
    const real = snpProvider(snp);
    fake = FakeTsm.start({
      ...real,
      outblobFor: async (ib, ctx) => (await new Promise((r) => setTimeout(r, 4_000)), real.outblobFor(ib, ctx)),
    });
    await startKbs();
    const child = spawn(
      BINARY,
      [
        "fetch",
        RESOURCE,
        "--tee",
        "snp",
        "--platform-root",
        fake.root,
        "--kbs",
        kbs!.url,
        "--ca",
        tls.caFile,
        "--deadline",
        "60",
      ],
      { stdio: ["ignore", "pipe", "pipe"] },
    );
    const exited = new Promise<number | null>((resolve) => child.on("exit", (code) => resolve(code)));
    const until = Date.now() + 20_000;
    while (fake.liveEntries().length === 0 && Date.now() < until) await new Promise((r) => setTimeout(r, 20));
    expect(fake.liveEntries()).toHaveLength(1);
    child.kill("SIGTERM");
    expect(await exited).toBe(143);
    expect(fake.liveEntries()).toEqual([]);
  });

  it("a chip the KBS does not trust is refused (exit kbs-refused), nothing on stdout", async () => {
    fake = FakeTsm.start(snpProvider(snp));
    await startKbs(makeTestPki());
    const r = await fetchSnp(fake.root);
    expect(r.code).toBe(EXIT_CODES["kbs-refused"]);
    expect(r.stdout.length).toBe(0);
    expect(r.stderr).toMatch(/chain|refused|attest/i);
  });

  it("a host whose report does not carry our report_data fails before the KBS sees it (exit evidence)", async () => {
    const real = snpProvider(snp);
    fake = FakeTsm.start({
      ...real,
      outblobFor: (ib, ctx) =>
        real.outblobFor(
          ib.map((x) => x ^ 0x5a),
          ctx,
        ),
    });
    await startKbs();
    const r = await fetchSnp(fake.root);
    expect(r.code).toBe(EXIT_CODES.evidence);
    expect(r.stderr).toMatch(/report_data/);
    expect(fake.liveEntries()).toEqual([]);
  });

  it("no SNP interface under the platform root: exit platform, hint names sev-guest", async () => {
    await startKbs();
    const r = await fetchSnp(empty);
    expect(r.code).toBe(EXIT_CODES.platform);
    expect(r.stderr).toMatch(/sev-guest/);
  });

  it("detect picks snp through the stand-in configfs-tsm", async () => {
    fake = FakeTsm.start(snpProvider(snp));
    const r = await runCli(["detect", "--platform-root", fake.root]);
    expect(r.code).toBe(0);
    expect(r.stdout.toString()).toMatch(/would attest as tee 'snp'/);
    expect(fake.liveEntries()).toEqual([]);
  });

  it("u64 fields beyond 2^53 leave the binary digit-exact (evidence command)", async () => {
    fake = FakeTsm.start({
      provider: "sev_guest",
      outblobFor: (ib) => {
        const rep = unsignedReport(snp, { reportData: ib });
        rep.plat_info = 0xfedcba9876543211n;
        return signReport(encodeSnpReport(rep), snp.vcekKey);
      },
    });
    const r = await runCli(["evidence", "--tee", "snp", "--platform-root", fake.root]);
    expect(r.code).toBe(0);
    expect(r.stdout.toString()).toMatch(/"plat_info":\s*18364758544493064721,/);
  });

  it("without configfs-tsm the binary reaches /dev/sev-guest through bun:ffi (a stand-in device answers ENOTTY)", async () => {
    const root = fs.mkdtempSync(path.join(os.tmpdir(), "snp-ioctl-root-"));
    try {
      fs.mkdirSync(path.join(root, "dev"));
      fs.symlinkSync("/dev/null", path.join(root, "dev/sev-guest"));
      await startKbs();
      const r = await fetchSnp(root);
      expect(r.code).toBe(EXIT_CODES.platform);
      expect(r.stderr).toMatch(/does not accept SNP guest requests \(ENOTTY/);
      expect(r.stderr).not.toMatch(/bun runtime/);
    } finally {
      fs.rmSync(root, { recursive: true, force: true });
    }
  });
});
