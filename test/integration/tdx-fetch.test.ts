// End to end on a stand-in TDX guest: the compiled binary gets a quote through a fake configfs-tsm
// (provider tdx_guest), reads a CCEL from the fake ACPI sysfs, and fetches a resource from the test
// KBS, whose tdx verifier checks REPORTDATA, the quote signature and the CCEL replay.
import * as crypto from "node:crypto";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { EXIT_CODES } from "../../platform/util/errors.ts";
import { ensureBinary, runCli } from "../helpers/binary.ts";
import { FakeTsm } from "../helpers/fake-tsm.ts";
import { createPki, type Pki } from "../helpers/pki.ts";
import { installCcel, makeCcel, makeTdxQuote, tdxOutblobFor } from "../helpers/tdx-fixtures.ts";
import { startTestKbs, type TestKbs } from "../kbs/server.ts";

const RESOURCE = "default/key/root";
const SECRET = crypto.randomBytes(32);
let pki: Pki;
let work: string;
let kbs: TestKbs | undefined;
let tsm: FakeTsm | undefined;

beforeAll(() => {
  ensureBinary();
  pki = createPki();
  work = fs.mkdtempSync(path.join(os.tmpdir(), "tdx-fetch-it-"));
});
afterEach(async () => {
  await kbs?.close();
  await tsm?.stop();
  kbs = undefined;
  tsm = undefined;
});
afterAll(() => fs.rmSync(work, { recursive: true, force: true }));

async function guestAndKbs(outblobFor: (inblob: Uint8Array) => Uint8Array, ccel?: ReturnType<typeof makeCcel>) {
  tsm = FakeTsm.start({ provider: "tdx_guest", outblobFor });
  if (ccel) installCcel(tsm.root, ccel);
  kbs = await startTestKbs({ tls: pki.tls, resources: { [RESOURCE]: SECRET } });
}

function fetchTdx() {
  const cfg = path.join(work, `cfg-${crypto.randomBytes(4).toString("hex")}.json`);
  fs.writeFileSync(cfg, JSON.stringify({ kbs: { request_timeout_s: 10 } }));
  return runCli(
    [
      "fetch",
      RESOURCE,
      "--kbs",
      kbs!.url,
      "--ca",
      pki.caFile,
      "--tee",
      "tdx",
      "--platform-root",
      tsm!.root,
      "--deadline",
      "60",
      "--config",
      cfg,
    ],
    {
      timeoutMs: 90_000,
    },
  );
}

describe("cvm-unlock fetch --tee tdx on a stand-in TDX guest", () => {
  for (const version of [4, 5] as const) {
    it(`v${version} quote + CCEL: the KBS verifies and releases the resource`, async () => {
      const ccel = makeCcel();
      await guestAndKbs(tdxOutblobFor({ version, rtmrs: ccel.rtmrs }), ccel);
      const r = await fetchTdx();
      expect(r.code, r.stderr).toBe(0);
      expect(r.stdout.equals(SECRET)).toBe(true);
      expect(kbs!.stats.requests).toMatchObject({ auth: 1, attest: 1, resource: 1 });
      expect(tsm!.requests).toHaveLength(1);
      expect(tsm!.liveEntries()).toEqual([]);
      // REPORTDATA = SHA-384 runtime digest ‖ 16 zero bytes.
      expect(Buffer.from(tsm!.requests[0]!.inblob.subarray(48)).equals(Buffer.alloc(16))).toBe(true);
      expect(r.stderr).not.toContain(SECRET.toString("hex"));
      console.log(`tdx v${version} fetch took ${r.durationMs.toFixed(0)} ms`);
    });
  }

  it("a host that returns a quote for other REPORTDATA is refused by the agent itself (exit 5, no /attest)", async () => {
    await guestAndKbs(() => makeTdxQuote({ version: 4, reportData: new Uint8Array(64).fill(9) }));
    const r = await fetchTdx();
    expect(r.code, r.stderr).toBe(EXIT_CODES.evidence);
    expect(r.stderr).toMatch(/REPORTDATA/);
    expect(r.stdout.length).toBe(0);
    expect(kbs!.stats.requests.attest ?? 0).toBe(0);
  });

  it("a CCEL that does not match the quote's RTMRs is refused by the KBS (exit 8)", async () => {
    await guestAndKbs(tdxOutblobFor({ version: 5 }), makeCcel());
    const r = await fetchTdx();
    expect(r.code, r.stderr).toBe(EXIT_CODES["kbs-refused"]);
    expect(r.stdout.length).toBe(0);
    expect(kbs!.stats.errors.map((e) => e.reason).join("\n")).toMatch(/replays RTMR0/);
  });
});
