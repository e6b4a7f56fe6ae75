// init-data end to end with the compiled binary: the agent finds the document, binds its digest
// into the evidence (PCR 8 on swtpm, HOST_DATA through the stand-in configfs-tsm for snp, MRCONFIGID
// for tdx), sends it verbatim, and the test KBS verifies it as trustee does; a resource policy on the
// token's init_data claim is what makes a tampered document useless. Every refusal in the guest
// happens before /attest: the KBS never sees evidence with a mismatching binding.
import * as crypto from "node:crypto";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { sha256 } from "@noble/hashes/sha2.js";
import { expectedPcr8 } from "../../agent/init-data/binding.ts";
import { TPM_ALG } from "../../platform/tpm/constants.ts";
import { pcrExtend, pcrReadBank } from "../../platform/tpm/operations.ts";
import { withTpm } from "../../platform/tpm/client.ts";
import { fitTo, hex, utf8 } from "../../platform/util/bytes.ts";
import { Deadline } from "../../platform/util/deadline.ts";
import { EXIT_CODES } from "../../platform/util/errors.ts";
import { silentLogger } from "../../platform/util/log.ts";
import { ensureBinary, runCli, type RunResult } from "../helpers/binary.ts";
import { FakeTsm } from "../helpers/fake-tsm.ts";
import { createPki, type Pki } from "../helpers/pki.ts";
import { snpProvider, testPki } from "../helpers/snp-fixtures.ts";
import { startSwtpm, type Swtpm } from "../helpers/swtpm.ts";
import { makeTdxQuote } from "../helpers/tdx-fixtures.ts";
import { onlyInitData, startTestKbs, type TestKbs } from "../kbs/server.ts";
import { makeSnpVerifier } from "../kbs/verifiers/snp.ts";

const RESOURCE = "default/key/root";
const SECRET = crypto.randomBytes(32);
const INIT_DATA = `version = "0.1.0"
algorithm = "sha256"

[data]
"aa.toml" = '''
[token_configs.kbs]
url = "https://kbs.example.invalid:8080"
'''
"cvm-unlock.toml" = '''
resource = "default/key/root"
'''
`;
const DIGEST = sha256(utf8(INIT_DATA));

let pki: Pki;
let work: string;
let kbs: TestKbs | undefined;
let sw: Swtpm | undefined;
let tsm: FakeTsm | undefined;

beforeAll(() => {
  ensureBinary();
  pki = createPki();
  work = fs.mkdtempSync(path.join(os.tmpdir(), "init-data-it-"));
});
afterEach(async () => {
  await kbs?.close();
  await sw?.stop();
  await tsm?.stop();
  kbs = sw = tsm = undefined;
});
afterAll(() => fs.rmSync(work, { recursive: true, force: true }));

function writeInitData(text: string): string {
  const f = path.join(work, `init-data-${crypto.randomBytes(4).toString("hex")}.toml`);
  fs.writeFileSync(f, text);
  return f;
}

async function startKbs(extra: Parameters<typeof startTestKbs>[0] = {}): Promise<TestKbs> {
  kbs = await startTestKbs({
    tls: pki.tls,
    resources: { [RESOURCE]: SECRET },
    policy: onlyInitData(hex(DIGEST)),
    ...extra,
  });
  return kbs;
}

function fetch(tee: string, initDataFile: string, extra: string[]): Promise<RunResult> {
  return runCli(
    [
      "fetch",
      RESOURCE,
      "--kbs",
      kbs!.url,
      "--ca",
      pki.caFile,
      "--tee",
      tee,
      "--init-data",
      initDataFile,
      "--deadline",
      "60",
      ...extra,
    ],
    { timeoutMs: 90_000 },
  );
}

async function readPcr8(spec: string): Promise<Uint8Array> {
  const deadline = new Deadline(20_000);
  try {
    return await withTpm(
      spec,
      deadline,
      silentLogger,
      async (tpm) => (await pcrReadBank(tpm, TPM_ALG.SHA256, [8]))[0]!,
    );
  } finally {
    deadline.dispose();
  }
}

describe("init-data with tpm evidence (swtpm, PCR 8)", () => {
  it("extends PCR 8 once; the KBS verifies it and the policy releases; a second fetch in the same boot does not extend again", async () => {
    sw = await startSwtpm({ ekCerts: false });
    await startKbs();
    const file = writeInitData(INIT_DATA);
    const first = await fetch("tpm", file, ["--tpm", sw.spec]);
    expect(first.code, first.stderr).toBe(0);
    expect(first.stdout.equals(SECRET)).toBe(true);
    expect(first.stderr).toMatch(new RegExp(`init-data from file:.*sha256:${hex(DIGEST)}`));
    expect(hex(await readPcr8(sw.spec))).toBe(hex(expectedPcr8(DIGEST)));
    const second = await fetch("tpm", file, ["--tpm", sw.spec]);
    expect(second.code, second.stderr).toBe(0);
    expect(second.stderr).toMatch(/was already in PCR 8/);
    expect(hex(await readPcr8(sw.spec))).toBe(hex(expectedPcr8(DIGEST)));
  });

  it("PCR 8 holding something else (GRUB measured into it) is refused in the guest: the KBS is never contacted", async () => {
    sw = await startSwtpm({ ekCerts: false });
    const deadline = new Deadline(20_000);
    await withTpm(sw.spec, deadline, silentLogger, (tpm) =>
      pcrExtend(tpm, 8, [{ hashAlg: TPM_ALG.SHA256, digest: sha256(utf8("grub_cmd linux /vmlinuz")) }]),
    );
    deadline.dispose();
    await startKbs();
    const r = await fetch("tpm", writeInitData(INIT_DATA), ["--tpm", sw.spec]);
    expect(r.code).toBe(EXIT_CODES.platform);
    expect(r.stderr).toMatch(/PCR 8 already holds/);
    expect(r.stdout.length).toBe(0);
    expect(kbs!.stats.requests.attest).toBe(0);
  });

  it("a tampered init-data (one byte) binds and verifies, but the owner's policy refuses it (exit kbs-refused)", async () => {
    sw = await startSwtpm({ ekCerts: false });
    await startKbs();
    const r = await fetch("tpm", writeInitData(INIT_DATA.replace("example.invalid", "example.invalie")), [
      "--tpm",
      sw.spec,
    ]);
    expect(r.code).toBe(EXIT_CODES["kbs-refused"]);
    expect(r.stdout.length).toBe(0);
  });

  it("a sha384 init-data is refused for vTPM evidence before the KBS is contacted", async () => {
    sw = await startSwtpm({ ekCerts: false });
    await startKbs();
    const r = await fetch("tpm", writeInitData(INIT_DATA.replace('"sha256"', '"sha384"')), ["--tpm", sw.spec]);
    expect(r.code).toBe(EXIT_CODES.config);
    expect(r.stderr).toMatch(/needs sha256/);
    expect(kbs!.stats.requests.attest).toBe(0);
  });
});

describe("init-data with snp evidence (HOST_DATA through the stand-in configfs-tsm)", () => {
  const snp = testPki();
  const startSnpKbs = () =>
    startKbs({ verifiers: { snp: makeSnpVerifier({ anchors: [{ arkPem: snp.arkPem, askPem: snp.askPem }] }) } });

  it("HOST_DATA carrying the digest: the KBS checks it and releases", async () => {
    tsm = FakeTsm.start(snpProvider(snp, { hostData: fitTo(DIGEST, 32) }));
    await startSnpKbs();
    const r = await fetch("snp", writeInitData(INIT_DATA), ["--platform-root", tsm.root]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout.equals(SECRET)).toBe(true);
  });

  it("a VM launched with other HOST_DATA is refused in the guest, before /attest", async () => {
    tsm = FakeTsm.start(snpProvider(snp, { hostData: new Uint8Array(32).fill(7) }));
    await startSnpKbs();
    const r = await fetch("snp", writeInitData(INIT_DATA), ["--platform-root", tsm.root]);
    expect(r.code).toBe(EXIT_CODES.evidence);
    expect(r.stderr).toMatch(/HOST_DATA is 0707.*not launched with this init-data/);
    expect(kbs!.stats.requests.attest).toBe(0);
  });
});

describe("init-data with tdx evidence (MRCONFIGID through the stand-in configfs-tsm)", () => {
  const TDX_INIT_DATA = INIT_DATA.replace('"sha256"', '"sha384"');
  const tdxDigest = crypto.createHash("sha384").update(TDX_INIT_DATA).digest();

  it("MRCONFIGID carrying the digest: released", async () => {
    tsm = FakeTsm.start({
      provider: "tdx_guest",
      outblobFor: (inblob) => makeTdxQuote({ version: 4, reportData: inblob, mrConfigId: fitTo(tdxDigest, 48) }),
    });
    await startKbs({ policy: onlyInitData(hex(tdxDigest)) });
    const r = await fetch("tdx", writeInitData(TDX_INIT_DATA), ["--platform-root", tsm.root]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout.equals(SECRET)).toBe(true);
  });

  it("a TD launched with another MRCONFIGID is refused in the guest, before /attest", async () => {
    tsm = FakeTsm.start({
      provider: "tdx_guest",
      outblobFor: (inblob) => makeTdxQuote({ version: 4, reportData: inblob }),
    });
    await startKbs({ policy: onlyInitData(hex(tdxDigest)) });
    const r = await fetch("tdx", writeInitData(TDX_INIT_DATA), ["--platform-root", tsm.root]);
    expect(r.code).toBe(EXIT_CODES.evidence);
    expect(r.stderr).toMatch(/MRCONFIGID/);
    expect(kbs!.stats.requests.attest).toBe(0);
  });
});
