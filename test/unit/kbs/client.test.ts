import { afterEach, describe, expect, it } from "vitest";
import { fetchResource } from "../../../agent/kbs/client.ts";
import type { Attester, KbsClientOptions, TeeKeyType } from "../../../agent/kbs/types.ts";
import { Timeline } from "../../../agent/timeline.ts";
import { sampleSource } from "../../../platform/sample/index.ts";
import { Deadline } from "../../../platform/util/deadline.ts";
import { CvmError } from "../../../platform/util/errors.ts";
import { createLogger } from "../../../platform/util/log.ts";
import { MiniKbs, type MiniKbsOptions } from "./helpers/mini-kbs.ts";
import { makeTestPki } from "./helpers/tls-fixture.ts";

const SECRET = Buffer.from("0123456789abcdef0123456789abcdef-disk-key");
const RESOURCE = "default/luks/root";

const sampleAttester = (): Attester & { digests: Uint8Array[] } => {
  const digests: Uint8Array[] = [];
  return {
    tee: "sample",
    digests,
    async collect(runtimeDigest) {
      digests.push(runtimeDigest);
      return (await sampleSource.collect({} as never, { runtimeDigest, tee: "sample" })).primary;
    },
  };
};

let kbs: MiniKbs[] = [];
afterEach(async () => {
  for (const k of kbs) await k.stop();
  kbs = [];
});
async function startKbs(o: MiniKbsOptions = {}): Promise<MiniKbs> {
  const k = await new MiniKbs({ resources: { [RESOURCE]: SECRET }, ...o }).start();
  kbs.push(k);
  return k;
}

function clientOpts(endpoints: string[], over: Partial<KbsClientOptions> = {}) {
  const lines: string[] = [];
  const opts: KbsClientOptions = {
    endpoints,
    insecureHttp: true,
    requestTimeoutMs: 5000,
    attemptsPerEndpoint: 2,
    resourceAttempts: 3,
    teeKey: "ec-p256",
    deadline: new Deadline(30_000),
    log: createLogger({ format: "json", verbose: true, write: (l) => lines.push(l) }),
    timeline: new Timeline(),
    ...over,
  };
  return { opts, lines };
}

async function failure(p: Promise<unknown>): Promise<CvmError> {
  const e = await p.then(
    () => undefined,
    (err: unknown) => err,
  );
  expect(e, "expected a CvmError").toBeInstanceOf(CvmError);
  return e as CvmError;
}

describe("fetchResource against a trustee-faithful double", () => {
  for (const teeKey of ["ec-p256", "ec-p521", "rsa-oaep-256"] as TeeKeyType[]) {
    it(`${teeKey}: full RCAR handshake releases and decrypts the resource`, async () => {
      const k = await startKbs();
      const { opts, lines } = clientOpts([k.url], { teeKey });
      const attester = sampleAttester();
      const got = await fetchResource(opts, attester, RESOURCE);
      expect(Buffer.compare(got.secret, SECRET)).toBe(0);
      expect(got.endpoint).toBe(k.url);
      expect(opts.timeline.phases.map((p) => p.phase)).toEqual(["auth", "evidence", "attest", "resource", "decrypt"]);
      expect(attester.digests).toHaveLength(1);
      expect(attester.digests[0]!.length).toBe(48);

      const [auth, attest, res] = k.seen;
      expect(auth!.body).toBe('{"version":"0.4.0","tee":"sample","extra-params":{"supported-hash-algorithms":["sha256","sha384","sha512","sm3"]}}');
      expect(auth!.headers["content-type"]).toBe("application/json");
      expect(attest!.headers.cookie).toMatch(/^kbs-session-id=[0-9a-f]{32}$/); // sent although the cookie's Expires is 1970
      const body = JSON.parse(attest!.body);
      expect(Object.keys(body)).toEqual(["init-data", "runtime-data", "tee-evidence"]);
      expect(body["init-data"]).toBeNull();
      expect(Object.keys(body["tee-evidence"])).toEqual(["primary_evidence", "additional_evidence"]);
      expect(res!.path).toBe(`/kbs/v0/resource/${RESOURCE}`);
      expect(res!.headers.cookie).toBeUndefined(); // token only: works across replicas
      const token = /^Bearer (.+)$/.exec(res!.headers.authorization ?? "")![1]!;

      // Nothing secret in the logs: not the token, the nonce, the key or the plaintext.
      const log = lines.join("");
      const session = [...k.sessions.values()][0]!;
      for (const s of [token, session.nonce, SECRET.toString(), SECRET.toString("hex"), SECRET.toString("base64")]) expect(log).not.toContain(s);
      expect(log).toContain(`"token_chars":${token.length}`);
      got.secret.fill(0);
    });
  }

  it("sends init-data as {format: toml, body}", async () => {
    const k = await startKbs();
    const toml = 'version = "0.1.0"\nalgorithm = "sha256"\n[data]\n';
    await fetchResource(clientOpts([k.url], { initDataToml: toml }).opts, sampleAttester(), RESOURCE);
    expect(JSON.parse(k.seen[1]!.body)["init-data"]).toEqual({ format: "toml", body: toml });
  });

  it("works over HTTPS with the configured CA", async () => {
    const pki = makeTestPki();
    try {
      const k = await startKbs({ tls: pki.server });
      const got = await fetchResource(clientOpts([k.url], { insecureHttp: false, caPem: pki.caPem }).opts, sampleAttester(), RESOURCE);
      expect(Buffer.compare(got.secret, SECRET)).toBe(0);
    } finally {
      pki.cleanup();
    }
  });

  it("missing resource (trustee: 401 PluginInternalError) -> resource-missing after resourceAttempts handshakes", async () => {
    const k = await startKbs({ resources: {} });
    const e = await failure(fetchResource(clientOpts([k.url], { resourceAttempts: 3 }).opts, sampleAttester(), RESOURCE));
    expect(e.kind).toBe("resource-missing");
    expect(e.message).toContain(RESOURCE);
    expect(k.count("/kbs/v0/auth")).toBe(3);
  });

  it("policy deny -> kbs-refused at once, one handshake", async () => {
    const k = await startKbs({ allow: false });
    const e = await failure(fetchResource(clientOpts([k.url]).opts, sampleAttester(), RESOURCE));
    expect(e.kind).toBe("kbs-refused");
    expect(e.message).toMatch(/PolicyDeny: Access denied by policy/);
    expect(k.count("/kbs/v0/auth")).toBe(1);
  });

  it("a rejected (expired) token triggers a new handshake, then succeeds", async () => {
    const k = await startKbs({ rejectTokensFirst: 1 });
    const attester = sampleAttester();
    const got = await fetchResource(clientOpts([k.url]).opts, attester, RESOURCE);
    expect(Buffer.compare(got.secret, SECRET)).toBe(0);
    expect(k.count("/kbs/v0/auth")).toBe(2);
    expect(attester.digests).toHaveLength(2);
    expect(Buffer.compare(attester.digests[0]!, attester.digests[1]!)).not.toBe(0); // fresh nonce, fresh evidence
  });

  it("evidence not bound to the challenge -> kbs-refused (attestation failed)", async () => {
    const k = await startKbs();
    const liar: Attester = { tee: "sample", collect: async () => ({ svn: "1", report_data: Buffer.alloc(48).toString("base64") }) };
    const e = await failure(fetchResource(clientOpts([k.url]).opts, liar, RESOURCE));
    expect(e.kind).toBe("kbs-refused");
    expect(e.message).toMatch(/refused attestation/);
    expect(k.count(`/kbs/v0/resource/${RESOURCE}`)).toBe(0);
  });

  it("tampered JWE -> decrypt error, nothing returned", async () => {
    const k = await startKbs({ tamperJwe: (j) => ({ ...j, ciphertext: Buffer.from(Buffer.from(j.ciphertext, "base64url").map((b) => b ^ 1)).toString("base64url") }) });
    const e = await failure(fetchResource(clientOpts([k.url]).opts, sampleAttester(), RESOURCE));
    expect(e.kind).toBe("decrypt");
  });

  it("invalid resource path or plain-http endpoint: config error before any request", async () => {
    const k = await startKbs();
    for (const bad of ["default/luks", ".hidden/a/b", "a/b/c/d", "a/b/c?x", "a//c"]) {
      const e = await failure(fetchResource(clientOpts([k.url]).opts, sampleAttester(), bad));
      expect(e.kind, bad).toBe("config");
    }
    const e = await failure(fetchResource(clientOpts([k.url], { insecureHttp: false }).opts, sampleAttester(), RESOURCE));
    expect(e.kind).toBe("config");
    expect(k.seen).toHaveLength(0);
  });

  it("first endpoint unreachable -> the next one releases the secret", async () => {
    const dead = await startKbs();
    const deadUrl = dead.url;
    await dead.stop();
    kbs = kbs.filter((x) => x !== dead);
    const k = await startKbs();
    const got = await fetchResource(clientOpts([deadUrl, k.url], { attemptsPerEndpoint: 1 }).opts, sampleAttester(), RESOURCE);
    expect(got.endpoint).toBe(k.url);
  });

  it("wrong path prefix (404 PluginNotFound) -> kbs-protocol", async () => {
    const k = await startKbs();
    const e = await failure(fetchResource(clientOpts([`${k.url}/wrong`]).opts, sampleAttester(), RESOURCE));
    expect(e.kind).toBe("kbs-protocol");
    expect(e.hint).toMatch(/prefix/);
  });

  it("no session cookie from /auth -> kbs-protocol", async () => {
    const k = await startKbs({ noCookie: true });
    const e = await failure(fetchResource(clientOpts([k.url]).opts, sampleAttester(), RESOURCE));
    expect(e.kind).toBe("kbs-protocol");
    expect(e.message).toMatch(/no kbs-session-id cookie/);
  });
});
