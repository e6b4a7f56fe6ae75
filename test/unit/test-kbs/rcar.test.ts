// The test KBS REJECTS what trustee rejects on /auth and /attest, with trustee's status and body.
import { createHash } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startTestKbs, type TestKbs } from "../../kbs/server.ts";
import {
  cookieOf,
  digestFor,
  makeTeeKey,
  rawRequest,
  sampleEvidence,
  sampleHandshake,
  type TeeKey,
} from "../../kbs/raw-client.ts";

const ERR = "https://github.com/confidential-containers/kbs/errors/";
const ATTEST_DETAIL = "Attestation error: RCAR handshake Attest failed";

let kbs: TestKbs;
let key: TeeKey;
beforeAll(async () => {
  kbs = await startTestKbs({ resources: { "default/key/root": "s3cret" } });
  key = await makeTeeKey("ec-p256");
});
afterAll(() => kbs.close());

const auth = (body: unknown) =>
  rawRequest(`${kbs.url}/kbs/v0/auth`, { body: typeof body === "string" ? body : JSON.stringify(body) });
const attest = (body: unknown, cookie?: string) =>
  rawRequest(`${kbs.url}/kbs/v0/attest`, { body: JSON.stringify(body), headers: cookie ? { cookie } : {} });

function attestation(
  nonce: string,
  opts: {
    tpk?: Record<string, string>;
    digestTpk?: Record<string, string>;
    additional?: string;
    digestAdditional?: string;
  } = {},
) {
  const tpk = opts.tpk ?? key.publicJwk;
  const digest = digestFor(opts.digestTpk ?? tpk, nonce, opts.digestAdditional ?? opts.additional ?? "");
  return {
    "init-data": null,
    "runtime-data": { nonce, "tee-pubkey": tpk },
    "tee-evidence": { primary_evidence: sampleEvidence(digest), additional_evidence: opts.additional ?? "" },
  };
}

async function authed(): Promise<{ cookie: string; nonce: string }> {
  const r = await auth({ version: "0.4.0", tee: "sample", "extra-params": "" });
  expect(r.status).toBe(200);
  return { cookie: cookieOf(r), nonce: JSON.parse(r.body).nonce };
}

function expectError(r: { status: number; body: string }, status: number, variant: string, detail?: string) {
  expect(r.status).toBe(status);
  const b = JSON.parse(r.body);
  expect(Object.keys(b)).toEqual(["type", "detail"]);
  expect(b.type).toBe(ERR + variant);
  if (detail !== undefined) expect(b.detail).toBe(detail);
}

describe("/auth", () => {
  it('answers a Challenge with a 32-byte base64 nonce, extra-params "" and a 5-minute Expires cookie', async () => {
    const before = Date.now();
    const r = await auth({
      version: "0.4.0",
      tee: "sample",
      "extra-params": { "supported-hash-algorithms": ["sha384"] },
    });
    expect(r.status).toBe(200);
    expect(r.headers["content-type"]).toBe("application/json");
    const body = JSON.parse(r.body);
    expect(Object.keys(body)).toEqual(["nonce", "extra-params"]);
    expect(body["extra-params"]).toBe("");
    expect(body.nonce).toMatch(/^[A-Za-z0-9+/]{43}=$/);
    expect(Buffer.from(body.nonce, "base64")).toHaveLength(32);
    const sc = r.headers["set-cookie"]!;
    expect(sc).toHaveLength(1);
    const m = /^kbs-session-id=([0-9a-f]{32}); Expires=([^;]+)$/.exec(sc[0]!);
    expect(m).not.toBeNull();
    const expires = Date.parse(m![2]!);
    expect(expires - before).toBeGreaterThan(299_000 - 1000);
    expect(expires - before).toBeLessThanOrEqual(300_000 + 1000);
  });

  it("accepts build metadata, any extra-params value, and gives a new session each time", async () => {
    const a = await auth({ version: "0.4.0+local", tee: "sample", "extra-params": null });
    const b = await auth({ version: "0.4.0", tee: "snp", "extra-params": {} });
    expect([a.status, b.status]).toEqual([200, 200]);
    expect(cookieOf(a)).not.toBe(cookieOf(b));
  });

  it.each([
    ["0.4", "Attestation error: RCAR handshake Auth failed: failed to parse KBS version"],
    [
      "0.4.1",
      "Attestation error: RCAR handshake Auth failed: KBS Client Protocol Version Mismatch: expect =0.4.0 while the request is 0.4.1",
    ],
    [
      "0.4.0-rc1",
      "Attestation error: RCAR handshake Auth failed: KBS Client Protocol Version Mismatch: expect =0.4.0 while the request is 0.4.0-rc1",
    ],
    [
      "0.3.0",
      "Attestation error: RCAR handshake Auth failed: KBS Client Protocol Version Mismatch: expect =0.4.0 while the request is 0.3.0",
    ],
  ])("rejects version %s with trustee's detail", async (version, detail) => {
    expectError(await auth({ version, tee: "sample", "extra-params": "" }), 401, "AttestationError", detail);
  });

  it.each([
    ["missing extra-params", { version: "0.4.0", tee: "sample" }],
    ["unknown tee", { version: "0.4.0", tee: "sev", "extra-params": "" }],
    ["legacy Azure name on a modern KBS", { version: "0.4.0", tee: "azsnpvtpm", "extra-params": "" }],
    ["numeric version", { version: 4, tee: "sample", "extra-params": "" }],
    ["not JSON", "{version"],
  ])("rejects %s as 'deserialize Request'", async (_name, body) => {
    expectError(
      await auth(body),
      401,
      "AttestationError",
      "Attestation error: RCAR handshake Auth failed: deserialize Request",
    );
  });

  it("GET /kbs/v0/auth is 404 PluginNotFound", async () => {
    expectError(await rawRequest(`${kbs.url}/kbs/v0/auth`), 404, "PluginNotFound", "Plugin auth not found");
  });
});

describe("/attest", () => {
  it("issues an ES256 EAR token whose claims carry the tee claims and the runtime data", async () => {
    const a = await auth({ version: "0.4.0", tee: "sample", "extra-params": "" });
    const authCookieLine = a.headers["set-cookie"]![0]!;
    const cookie = cookieOf(a);
    const nonce = JSON.parse(a.body).nonce as string;
    await new Promise((r) => setTimeout(r, 1100)); // a re-issued Expires would now differ by a second
    const r = await attest(attestation(nonce), cookie);
    expect(r.status).toBe(200);
    // Same id and the same absolute Expires as /auth: /attest never extends the session.
    expect(r.headers["set-cookie"]![0]).toBe(authCookieLine);
    const token = JSON.parse(r.body).token as string;
    const [h, p] = token
      .split(".")
      .slice(0, 2)
      .map((s) => JSON.parse(Buffer.from(s, "base64url").toString()));
    expect(h).toMatchObject({ typ: "JWT", alg: "ES256", jwk: { kty: "EC", crv: "P-256" } });
    expect(p.exp - p.iat).toBe(300);
    const ae = p.submods.cpu0["ear.veraison.annotated-evidence"];
    expect(ae.sample).toMatchObject({ svn: "1", launch_digest: "abcde" });
    expect(ae.runtime_data_claims).toEqual({ "tee-pubkey": key.publicJwk, nonce, "additional-evidence": "" });
    expect(ae.report_data).toBe(Buffer.from(digestFor(key.publicJwk, nonce)).toString("hex"));
  });

  it("returns the same token for an already attested session without checking nonce or evidence", async () => {
    const { cookie, nonce } = await authed();
    const first = await attest(attestation(nonce), cookie);
    const bogus = attestation(Buffer.alloc(32).toString("base64")) as { "tee-evidence": { primary_evidence: unknown } };
    bogus["tee-evidence"].primary_evidence = { svn: "1", report_data: "" };
    const again = await attest(bogus, cookie);
    expect(again.status).toBe(200);
    expect(JSON.parse(again.body).token).toBe(JSON.parse(first.body).token);
    // ...but, as in trustee's __attest, the body must still deserialize as an Attestation.
    const garbage = await rawRequest(`${kbs.url}/kbs/v0/attest`, { body: "not even json", headers: { cookie } });
    expectError(garbage, 401, "AttestationError", ATTEST_DETAIL);
  });

  const cases: [string, RegExp, (n: string) => unknown][] = [
    [
      "a wrong nonce",
      /nonce in the handshake session is different/,
      () => attestation(Buffer.alloc(32, 1).toString("base64")),
    ],
    [
      "a tee-pubkey with an extra kid member that the client hashed",
      /does not equal the expected runtime digest/,
      (n) => attestation(n, { tpk: { ...key.publicJwk, kid: "k" }, digestTpk: { ...key.publicJwk, kid: "k" } }),
    ],
    [
      "a digest that leaves out additional-evidence",
      /does not equal the expected runtime digest/,
      (n) => {
        const a = attestation(n) as { "tee-evidence": { primary_evidence: unknown } };
        const canonical = JSON.stringify({
          nonce: n,
          "tee-pubkey": Object.fromEntries(Object.entries(key.publicJwk).sort()),
        });
        a["tee-evidence"].primary_evidence = sampleEvidence(
          new Uint8Array(createHash("sha384").update(canonical).digest()),
        );
        return a;
      },
    ],
    [
      "a digest over different additional evidence",
      /does not equal the expected runtime digest/,
      (n) => attestation(n, { additional: "", digestAdditional: '{"sampledevice":{}}' }),
    ],
    [
      "no additional_evidence member",
      /missing field `additional_evidence`/,
      (n) => {
        const a = attestation(n) as { "tee-evidence": Record<string, unknown> };
        delete a["tee-evidence"].additional_evidence;
        return a;
      },
    ],
    [
      "report_data padded to 64 bytes (SNP style) for sample",
      /64 bytes\) does not equal/,
      (n) => {
        const a = attestation(n) as { "tee-evidence": { primary_evidence: unknown } };
        const d = Buffer.concat([digestFor(key.publicJwk, n), Buffer.alloc(16)]);
        a["tee-evidence"].primary_evidence = sampleEvidence(d);
        return a;
      },
    ],
    [
      "sample evidence without svn",
      /svn/,
      (n) => {
        const a = attestation(n) as { "tee-evidence": { primary_evidence: Record<string, unknown> } };
        delete a["tee-evidence"].primary_evidence.svn;
        return a;
      },
    ],
    [
      "init-data in JSON format",
      /Unsupported initdata format/,
      (n) => ({ ...(attestation(n) as object), "init-data": { format: "json", body: "{}" } }),
    ],
    [
      "no runtime-data",
      /missing field `runtime-data`/,
      (n) => {
        const a = attestation(n) as Record<string, unknown>;
        delete a["runtime-data"];
        return a;
      },
    ],
  ];
  it.each(cases)("rejects %s with 401 AttestationError", async (_name, reason, build) => {
    const { cookie, nonce } = await authed();
    const before = kbs.stats.errors.length;
    expectError(await attest(build(nonce), cookie), 401, "AttestationError", ATTEST_DETAIL);
    expect(kbs.stats.errors.length).toBe(before + 1);
    expect(kbs.stats.errors.at(-1)!.reason).toMatch(reason);
  });

  it("rejects a missing cookie, an unknown session and an expired session", async () => {
    const { nonce } = await authed();
    expectError(await attest(attestation(nonce)), 401, "AttestationError", ATTEST_DETAIL);
    expect(kbs.stats.errors.at(-1)!.reason).toBe("cookie not found");
    expectError(
      await attest(attestation(nonce), `kbs-session-id=${"0".repeat(32)}`),
      401,
      "AttestationError",
      ATTEST_DETAIL,
    );
    expect(kbs.stats.errors.at(-1)!.reason).toBe("session not found");
    const s = await authed();
    kbs.expireSessions();
    expectError(await attest(attestation(s.nonce), s.cookie), 401, "AttestationError", ATTEST_DETAIL);
    expect(kbs.stats.errors.at(-1)!.reason).toBe("session expired.");
  });

  it("uses the tee from /auth, not from the body: an snp session cannot pass with sample evidence", async () => {
    const r = await auth({ version: "0.4.0", tee: "snp", "extra-params": "" });
    const nonce = JSON.parse(r.body).nonce;
    expectError(await attest(attestation(nonce), cookieOf(r)), 401, "AttestationError", ATTEST_DETAIL);
  });

  it("honours allowTees", async () => {
    const strict = await startTestKbs({ allowTees: ["tpm"] });
    try {
      await expect(sampleHandshake(strict.url)).rejects.toThrow(/attest 401/);
      expect(strict.stats.errors.at(-1)!.reason).toMatch(/not allowed/);
    } finally {
      await strict.close();
    }
  });
});
