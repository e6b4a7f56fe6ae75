// `cvm-unlock fetch` (the compiled binary) against the trustee-faithful test KBS over HTTPS with a
// test CA: success, TLS failures, outages, retries, session/token expiry, tampering, refusals.
// Exit codes are asserted by kind (platform/util/errors.ts EXIT_CODES); the secret must never
// reach stderr, and nothing may reach stdout on failure.
import * as crypto from "node:crypto";
import * as fs from "node:fs";
import * as net from "node:net";
import * as os from "node:os";
import * as path from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { EXIT_CODES } from "../../platform/util/errors.ts";
import { ensureBinary, runCli, type RunResult } from "../helpers/binary.ts";
import { createPki, type Pki } from "../helpers/pki.ts";
import { startTestKbs, type StartOptions, type TestKbs } from "../kbs/server.ts";

const RESOURCE = "default/key/root";
const SECRET = crypto.randomBytes(32);

let pki: Pki;
let work: string;
let kbs: TestKbs | undefined;
const extraServers: TestKbs[] = [];

beforeAll(() => {
  ensureBinary();
  pki = createPki();
  work = fs.mkdtempSync(path.join(os.tmpdir(), "fetch-it-"));
});
afterEach(async () => {
  await kbs?.close();
  kbs = undefined;
  for (const s of extraServers.splice(0)) await s.close();
});
afterAll(() => {
  fs.rmSync(work, { recursive: true, force: true });
  fs.rmSync(pki.dir, { recursive: true, force: true });
});

async function start(opts: StartOptions = {}): Promise<TestKbs> {
  kbs = await startTestKbs({ tls: pki.tls, resources: { [RESOURCE]: SECRET }, ...opts });
  return kbs;
}

/** A config file for the knobs the CLI has no flag for. */
function config(kbsKeys: Record<string, unknown> = {}): string {
  const file = path.join(work, `config-${crypto.randomBytes(4).toString("hex")}.json`);
  fs.writeFileSync(file, JSON.stringify({ kbs: { request_timeout_s: 10, ...kbsKeys } }));
  return file;
}

interface FetchOpts {
  urls?: string[];
  ca?: string | null;
  resource?: string;
  deadline?: number;
  kbsConfig?: Record<string, unknown>;
  extra?: string[];
  extraFds?: number;
}

function fetchCli(o: FetchOpts = {}): Promise<RunResult> {
  const urls = o.urls ?? [kbs!.url];
  const ca = o.ca === undefined ? pki.caFile : o.ca;
  const args = [
    "fetch",
    o.resource ?? RESOURCE,
    ...urls.flatMap((u) => ["--kbs", u]),
    ...(ca !== null ? ["--ca", ca] : []),
    "--tee",
    "sample",
    "--allow-sample",
    "--deadline",
    String(o.deadline ?? 60),
    "--config",
    config(o.kbsConfig),
    ...(o.extra ?? []),
  ];
  return runCli(args, { timeoutMs: 110_000, ...(o.extraFds ? { extraFds: o.extraFds } : {}) });
}

/** The secret must not be on stderr in any encoding a logger might use. */
function expectNoLeak(r: RunResult): void {
  for (const enc of ["hex", "base64", "base64url"] as const) expect(r.stderr).not.toContain(SECRET.toString(enc));
  expect(Buffer.from(r.stderr, "utf8").includes(SECRET)).toBe(false);
}

function expectFailure(r: RunResult, kind: keyof typeof EXIT_CODES, message: RegExp): void {
  expect(r.timedOut, r.stderr).toBe(false);
  expect(r.code, r.stderr).toBe(EXIT_CODES[kind]);
  expect(r.stderr).toMatch(message);
  expect(r.stdout.length, "nothing on stdout on failure").toBe(0);
  expectNoLeak(r);
}

function expectSuccess(r: RunResult): void {
  expect(r.timedOut, r.stderr).toBe(false);
  expect(r.code, r.stderr).toBe(0);
  expect(r.stdout.equals(SECRET), "stdout is exactly the resource").toBe(true);
  expectNoLeak(r);
}

async function deadPort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((res) => s.listen(0, "127.0.0.1", res));
  const port = (s.address() as net.AddressInfo).port;
  await new Promise<void>((res) => s.close(() => res()));
  return port;
}

describe("cvm-unlock fetch against the test KBS", () => {
  it("releases the resource: stdout bytes == resource, one handshake", async () => {
    await start();
    const r = await fetchCli();
    expectSuccess(r);
    expect(kbs!.stats.requests).toMatchObject({ auth: 1, attest: 1, resource: 1 });
    expect(kbs!.stats.released).toBe(1);
    console.log(`fetch success took ${r.durationMs.toFixed(0)} ms`);
  });

  it("--out-fd 3 writes the secret there and nothing to stdout", async () => {
    await start();
    const r = await fetchCli({ extra: ["--out-fd", "3"], extraFds: 1 });
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout.length).toBe(0);
    expect(r.fds[0]!.equals(SECRET)).toBe(true);
    expectNoLeak(r);
  });

  it.each([
    ["an unrelated CA", () => pki.wrongCaFile],
    ["a CA with the same subject DN but another key", () => pki.sameNameWrongCaFile],
  ])("fails TLS verification with %s", async (_n, ca) => {
    await start();
    const r = await fetchCli({ ca: ca() });
    expectFailure(r, "tls", /TLS|certificate/i);
    expect(kbs!.stats.requests.auth).toBe(0);
  });

  it("fails TLS verification with no CA configured against a private-CA server", async () => {
    await start();
    const r = await fetchCli({ ca: null });
    expectFailure(r, "tls", /TLS|certificate/i);
  });

  it("KBS down at start, up within the deadline: succeeds", async () => {
    await start({ listenDelayMs: 1500 });
    const t0 = Date.now();
    const r = await fetchCli({ deadline: 30 });
    expectSuccess(r);
    const firstServed = kbs!.stats.events[0]!.at - t0;
    expect(firstServed).toBeGreaterThanOrEqual(1400);
    console.log(
      `KBS came up after 1500 ms; first request served ${firstServed} ms after spawn; total ${r.durationMs.toFixed(0)} ms`,
    );
  });

  it("KBS down for the whole deadline: fails with deadline (exit 12) naming the last failure, within the deadline", async () => {
    const port = await deadPort();
    const r = await runCli(
      [
        "fetch",
        RESOURCE,
        "--kbs",
        `https://127.0.0.1:${port}`,
        "--ca",
        pki.caFile,
        "--tee",
        "sample",
        "--allow-sample",
        "--deadline",
        "4",
        "--config",
        config(),
      ],
      { timeoutMs: 30_000 },
    );
    expect(r.code, r.stderr).toBe(EXIT_CODES.deadline);
    // the deadline ends either the wait between attempts or an attempt itself: both name the failures
    expect(r.stderr).toMatch(
      /deadline of 4s exceeded while (contacting the KBS|talking to KBS \S+ \(auth\)) \(\d+ attempts( before)?, last: .*ECONNREFUSED/,
    );
    expect(r.durationMs).toBeLessThan(4000 + 3000);
    expect(r.stdout.length).toBe(0);
  });

  it("honours 503 + Retry-After: 2 (measured gap between the two /auth requests)", async () => {
    await start({ faults: { unavailable: { auth: { count: 1, retryAfter: "2" } } } });
    const r = await fetchCli();
    expectSuccess(r);
    const auths = kbs!.stats.events.filter((e) => e.endpoint === "auth");
    expect(auths.map((e) => e.fault ?? e.status)).toEqual(["503", 200]);
    const gap = auths[1]!.at - auths[0]!.at;
    console.log(`Retry-After: 2 -> measured gap ${gap} ms`);
    expect(gap).toBeGreaterThanOrEqual(1950);
    expect(gap).toBeLessThan(6000);
  });

  it("retries a dropped connection", async () => {
    await start({ faults: { drop: { attest: 1 } } });
    const r = await fetchCli();
    expectSuccess(r);
    expect(kbs!.stats.requests.attest).toBeGreaterThanOrEqual(2);
  });

  it("recovers when the session and token expire between /attest and the resource request", async () => {
    await start({ faults: { expireTokenAfterAttest: 1 } });
    const r = await fetchCli();
    expectSuccess(r);
    expect(kbs!.stats.requests.auth).toBe(2);
    expect(kbs!.stats.errors.map((e) => e.variant)).toEqual(["TokenVerifierError"]);
  });

  it("a tampered JWE fails with a decrypt error and writes nothing to stdout", async () => {
    await start({ faults: { tamperJwe: { count: 5, part: "ciphertext" } } });
    const r = await fetchCli();
    expectFailure(r, "decrypt", /decrypt|authenticat|JWE/i);
  });

  it("a tampered JWE tag fails the same way", async () => {
    await start({ faults: { tamperJwe: { count: 5, part: "tag" } } });
    expectFailure(await fetchCli(), "decrypt", /decrypt|authenticat|JWE/i);
  });

  it("a malformed /auth body is a protocol error, not a crash", async () => {
    await start({ faults: { malformed: { auth: { count: 5, mode: "truncated" } } } });
    expectFailure(await fetchCli(), "kbs-protocol", /auth/i);
  });

  it("a missing resource fails clearly after a bounded number of handshakes", async () => {
    await start();
    const r = await fetchCli({ resource: "default/key/absent" });
    expectFailure(r, "resource-missing", /absent/);
    const auths = kbs!.stats.requests.auth;
    console.log(`missing resource: ${auths} /auth requests`);
    expect(auths).toBeGreaterThanOrEqual(1);
    expect(auths).toBeLessThanOrEqual(3);
    expect(kbs!.stats.errors.every((e) => e.variant === "PluginInternalError")).toBe(true);
  });

  it("uses the second endpoint when the first is dead", async () => {
    await start();
    const dead = `https://127.0.0.1:${await deadPort()}`;
    const r = await fetchCli({ urls: [dead, kbs!.url] });
    expectSuccess(r);
    expect(kbs!.stats.requests.auth).toBe(1);
  });

  it("a policy deny gives a clear 'refused' error", async () => {
    await start({ policy: "deny" });
    const r = await fetchCli();
    expectFailure(r, "kbs-refused", /refused|denied/i);
    expect(kbs!.stats.errors.at(-1)!.variant).toBe("PolicyDeny");
  });

  it("a KBS without a verifier for the tee refuses attestation", async () => {
    await start({ allowTees: ["tpm"] });
    expectFailure(await fetchCli(), "kbs-refused", /refused|attestation/i);
  });
});
