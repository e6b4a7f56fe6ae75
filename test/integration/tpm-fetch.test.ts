// End to end with a real (software) TPM: the compiled binary quotes on swtpm and fetches a resource
// from the test KBS, whose tpm verifier checks the quote exactly as trustee does (signature with
// the AK, PCR digest, extraData = first 32 bytes of the runtime digest, trusted AK list).
import * as crypto from "node:crypto";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { EXIT_CODES } from "../../platform/util/errors.ts";
import { Deadline } from "../../platform/util/deadline.ts";
import { silentLogger } from "../../platform/util/log.ts";
import { b64 } from "../../platform/util/bytes.ts";
import { publicToSpkiDer } from "../../platform/tpm/attestation/keys.ts";
import { withAttestationKey } from "../../platform/tpm/attestation/ak.ts";
import { withTpm } from "../../platform/tpm/client.ts";
import { ensureBinary, runCli } from "../helpers/binary.ts";
import { createPki, type Pki } from "../helpers/pki.ts";
import { startSwtpm, type Swtpm } from "../helpers/swtpm.ts";
import { startTestKbs, type TestKbs } from "../kbs/server.ts";
import { tpmVerifierTrusting } from "../kbs/verifiers/tpm.ts";

const RESOURCE = "default/key/root";
const SECRET = crypto.randomBytes(32);
let pki: Pki;
let work: string;
let sw: Swtpm;
let akPublic: string;
let kbs: TestKbs | undefined;

beforeAll(async () => {
  ensureBinary();
  pki = createPki();
  work = fs.mkdtempSync(path.join(os.tmpdir(), "tpm-fetch-it-"));
  sw = await startSwtpm();
  const deadline = new Deadline(60_000);
  try {
    // The AK the agent will derive (same template, same endorsement seed): what an operator pins.
    akPublic = await withTpm(sw.spec, deadline, silentLogger, (tpm) =>
      withAttestationKey(tpm, 0x81010002, async (ak) => b64(publicToSpkiDer(ak.publicArea))),
    );
  } finally {
    deadline.dispose();
  }
});
afterEach(async () => {
  await kbs?.close();
  kbs = undefined;
});
afterAll(async () => {
  await sw?.stop();
  fs.rmSync(work, { recursive: true, force: true });
});

function fetchTpm(extra: string[] = []) {
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
      "tpm",
      "--tpm",
      sw.spec,
      "--deadline",
      "60",
      "--config",
      cfg,
      ...extra,
    ],
    {
      timeoutMs: 90_000,
    },
  );
}

describe("cvm-unlock fetch --tee tpm against swtpm", () => {
  it("the KBS verifies the quote with the trusted AK and releases the resource", async () => {
    kbs = await startTestKbs({
      tls: pki.tls,
      resources: { [RESOURCE]: SECRET },
      verifiers: { tpm: tpmVerifierTrusting([akPublic]) },
    });
    const timings = path.join(work, "timings.json");
    const r = await fetchTpm(["--timings-json", timings]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout.equals(SECRET)).toBe(true);
    expect(kbs.stats.requests).toMatchObject({ auth: 1, attest: 1, resource: 1 });
    expect(r.stderr).not.toContain(SECRET.toString("hex"));
    console.log(
      `[tpm] fetch via swtpm took ${r.durationMs.toFixed(0)} ms; timeline ${fs.readFileSync(timings, "utf8").trim()}`,
    );
  });

  it("a repeated handshake quotes afresh: the AK loaded during /auth serves only the first nonce", async () => {
    // The session expires between /attest and the resource: the client redoes auth + attest with a
    // new nonce, and the second quote must be bound to it (the KBS checks extraData every time).
    kbs = await startTestKbs({
      tls: pki.tls,
      resources: { [RESOURCE]: SECRET },
      faults: { expireTokenAfterAttest: 1 },
    });
    const r = await fetchTpm();
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout.equals(SECRET)).toBe(true);
    expect(kbs.stats.requests).toMatchObject({ auth: 2, attest: 2 });
  });

  it("the registry verifier (no trusted-AK list) also accepts it: binding and signature are real", async () => {
    kbs = await startTestKbs({ tls: pki.tls, resources: { [RESOURCE]: SECRET } });
    const r = await fetchTpm();
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout.equals(SECRET)).toBe(true);
  });

  it("an AK the KBS does not trust is refused (exit 8, nothing on stdout)", async () => {
    const other = crypto
      .generateKeyPairSync("rsa", { modulusLength: 2048 })
      .publicKey.export({ type: "spki", format: "der" })
      .toString("base64");
    kbs = await startTestKbs({
      tls: pki.tls,
      resources: { [RESOURCE]: SECRET },
      verifiers: { tpm: tpmVerifierTrusting([other]) },
    });
    const r = await fetchTpm();
    expect(r.code, r.stderr).toBe(EXIT_CODES["kbs-refused"]);
    expect(r.stdout.length).toBe(0);
    expect(kbs.stats.errors.map((e) => e.reason).join("\n")).toMatch(/not in the list of trusted keys/);
  });

  it("a TPM that is not there fails fast with the platform exit code and a hint", async () => {
    kbs = await startTestKbs({ tls: pki.tls, resources: { [RESOURCE]: SECRET } });
    const r = await runCli(
      [
        "fetch",
        RESOURCE,
        "--kbs",
        kbs.url,
        "--ca",
        pki.caFile,
        "--tee",
        "tpm",
        "--tpm",
        `swtpm:127.0.0.1:${sw.port + 2}`,
        "--deadline",
        "20",
      ],
      { timeoutMs: 60_000 },
    );
    expect(r.code, r.stderr).toBe(EXIT_CODES.platform);
    expect(r.stdout.length).toBe(0);
    expect(r.stderr).toMatch(/swtpm 127\.0\.0\.1:\d+/);
  });

  it("detect reports the TPM with manufacturer and banks", async () => {
    const r = await runCli(["detect", "--tpm", sw.spec, "--json"], { timeoutMs: 60_000 });
    const out = JSON.parse(r.stdout.toString("utf8"));
    const tpm = out.candidates.find((c: { source: string }) => c.source === "tpm");
    expect(tpm).toMatchObject({
      present: true,
      tee: "tpm",
      details: { manufacturer: "IBM", banks: "sha1,sha256,sha384" },
    });
  });
});
