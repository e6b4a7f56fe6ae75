import { randomBytes } from "node:crypto";
import * as fs from "node:fs";
import { afterEach, describe, expect, it } from "vitest";
import { fetchResource, openKbsSession } from "../../../agent/kbs/client.ts";
import type { Attester, KbsClientOptions, TeeKeyType } from "../../../agent/kbs/types.ts";
import { Timeline } from "../../../agent/timeline.ts";
import { makeSampleSource } from "../../../platform/sample/source.ts";
import { Deadline } from "../../../platform/util/deadline.ts";
import { failure } from "./helpers/failure.ts";
import { createLogger } from "../../../platform/util/log.ts";
import { createPki } from "../../helpers/pki.ts";
import { startTestKbs, type RecordedRequest, type StartOptions, type TestKbs } from "../../kbs/server.ts";

const SECRET = Buffer.from("0123456789abcdef0123456789abcdef-disk-key");
const RESOURCE = "default/luks/root";

const sampleAttester = (): Attester & { digests: Uint8Array[] } => {
  const digests: Uint8Array[] = [];
  return {
    tee: "sample",
    digests,
    async collect(runtimeDigest) {
      digests.push(runtimeDigest);
      return (await makeSampleSource().collect({} as never, { runtimeDigest, tee: "sample" })).primary;
    },
  };
};

// The client runs against the trustee-faithful test KBS (test/kbs/), which checks the cookie, nonce,
// runtime-data binding and token as trustee does; `seen` records the exact wire bytes it received.
type Kbs = TestKbs & { seen: RecordedRequest[]; count(path: string): number };
let kbs: Kbs[] = [];
afterEach(async () => {
  for (const k of kbs) await k.close();
  kbs = [];
});
async function startKbs(o: StartOptions = {}): Promise<Kbs> {
  const seen: RecordedRequest[] = [];
  const k = await startTestKbs({ resources: { [RESOURCE]: SECRET }, onRequest: (r) => seen.push(r), ...o });
  const handle = Object.assign(k, { seen, count: (path: string) => seen.filter((r) => r.path === path).length });
  kbs.push(handle);
  return handle;
}

function clientOpts(endpoints: string[], over: Partial<KbsClientOptions> = {}) {
  const lines: string[] = [];
  const opts: KbsClientOptions = {
    endpoints,
    insecureHttp: true,
    requestTimeoutMs: 5000,
    resourceAttempts: 3,
    backoff: { baseMs: 10, capMs: 50 },
    teeKey: "ec-p256",
    deadline: new Deadline(30_000),
    log: createLogger({ format: "json", verbose: true, write: (l) => lines.push(l) }),
    timeline: new Timeline(),
    ...over,
  };
  return { opts, lines };
}

describe("fetchResource against the trustee-faithful test KBS", () => {
  for (const teeKey of ["ec-p256", "ec-p521", "rsa-oaep-256"] as TeeKeyType[]) {
    it(`${teeKey}: full RCAR handshake releases and decrypts the resource`, async () => {
      const nonce = randomBytes(32).toString("base64");
      const k = await startKbs({ nonce: () => nonce });
      const { opts, lines } = clientOpts([k.url], { teeKey });
      const attester = sampleAttester();
      const got = await fetchResource(opts, attester, RESOURCE);
      expect(Buffer.compare(got.secret, SECRET)).toBe(0);
      expect(got.endpoint).toBe(k.url);
      expect(opts.timeline.phases.map((p) => p.phase)).toEqual(["auth", "evidence", "attest", "resource", "decrypt"]);
      expect(attester.digests).toHaveLength(1);
      expect(attester.digests[0]!.length).toBe(48);

      const [auth, attest, res] = k.seen;
      expect(auth!.body).toBe(
        '{"version":"0.4.0","tee":"sample","extra-params":{"supported-hash-algorithms":["sha256","sha384","sha512","sm3"]}}',
      );
      expect(auth!.headers["content-type"]).toBe("application/json");
      expect(attest!.headers.cookie).toMatch(/^kbs-session-id=[0-9a-f]{32}$/); // name=value only (Expires handling: messages.test.ts)
      const body = JSON.parse(attest!.body);
      expect(Object.keys(body)).toEqual(["init-data", "runtime-data", "tee-evidence"]);
      expect(body["init-data"]).toBeNull();
      expect(Object.keys(body["tee-evidence"])).toEqual(["primary_evidence", "additional_evidence"]);
      expect(res!.path).toBe(`/kbs/v0/resource/${RESOURCE}`);
      expect(res!.headers.cookie).toBeUndefined(); // token only: works across replicas
      const token = /^Bearer (.+)$/.exec(res!.headers.authorization ?? "")![1]!;

      // Nothing secret in the logs: not the token, the nonce, the key or the plaintext.
      const log = lines.join("");
      for (const s of [token, nonce, SECRET.toString(), SECRET.toString("hex"), SECRET.toString("base64")])
        expect(log).not.toContain(s);
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
    const pki = createPki();
    try {
      const k = await startKbs({ tls: pki.tls });
      const got = await fetchResource(
        clientOpts([k.url], { insecureHttp: false, caPem: pki.caPem }).opts,
        sampleAttester(),
        RESOURCE,
      );
      expect(Buffer.compare(got.secret, SECRET)).toBe(0);
    } finally {
      fs.rmSync(pki.dir, { recursive: true, force: true });
    }
  });

  it("missing resource (trustee: 401 PluginInternalError) -> resource-missing after resourceAttempts handshakes", async () => {
    const k = await startKbs({ resources: {} });
    const e = await failure(
      fetchResource(clientOpts([k.url], { resourceAttempts: 3 }).opts, sampleAttester(), RESOURCE),
    );
    expect(e.kind).toBe("resource-missing");
    expect(e.message).toContain(RESOURCE);
    expect(k.count("/kbs/v0/auth")).toBe(3);
  });

  it("policy deny -> kbs-refused at once, one handshake", async () => {
    const k = await startKbs({ policy: "deny" });
    const e = await failure(fetchResource(clientOpts([k.url]).opts, sampleAttester(), RESOURCE));
    expect(e.kind).toBe("kbs-refused");
    expect(e.message).toMatch(/PolicyDeny: Access denied by policy/);
    expect(k.count("/kbs/v0/auth")).toBe(1);
  });

  it("a rejected (expired) token triggers a new handshake, then succeeds", async () => {
    const k = await startKbs({ faults: { expireTokenAfterAttest: 1 } });
    const attester = sampleAttester();
    const got = await fetchResource(clientOpts([k.url]).opts, attester, RESOURCE);
    expect(Buffer.compare(got.secret, SECRET)).toBe(0);
    expect(k.count("/kbs/v0/auth")).toBe(2);
    expect(attester.digests).toHaveLength(2);
    expect(Buffer.compare(attester.digests[0]!, attester.digests[1]!)).not.toBe(0); // fresh nonce, fresh evidence
  });

  it("evidence not bound to the challenge -> kbs-refused after resourceAttempts handshakes (trustee's /attest error never says why)", async () => {
    const k = await startKbs();
    const liar: Attester = {
      tee: "sample",
      collect: async () => ({ svn: "1", report_data: Buffer.alloc(48).toString("base64") }),
    };
    const e = await failure(fetchResource(clientOpts([k.url], { resourceAttempts: 2 }).opts, liar, RESOURCE));
    expect(e.kind).toBe("kbs-refused");
    expect(e.message).toMatch(/refused attestation or lost our session/);
    expect(k.count("/kbs/v0/auth")).toBe(2);
    expect(k.count(`/kbs/v0/resource/${RESOURCE}`)).toBe(0);
  });

  it("tampered JWE -> decrypt error, nothing returned", async () => {
    for (const part of ["ciphertext", "tag"] as const) {
      const k = await startKbs({ faults: { tamperJwe: { count: 1, part } } });
      const e = await failure(fetchResource(clientOpts([k.url]).opts, sampleAttester(), RESOURCE));
      expect(e.kind, part).toBe("decrypt");
      expect(k.stats.released, part).toBe(1);
    }
  });

  it("invalid resource path or plain-http endpoint: config error before any request", async () => {
    const k = await startKbs();
    for (const bad of ["default/luks", ".hidden/a/b", "a/b/c/d", "a/b/c?x", "a//c"]) {
      const e = await failure(fetchResource(clientOpts([k.url]).opts, sampleAttester(), bad));
      expect(e.kind, bad).toBe("config");
    }
    const e = await failure(
      fetchResource(clientOpts([k.url], { insecureHttp: false }).opts, sampleAttester(), RESOURCE),
    );
    expect(e.kind).toBe("config");
    expect(k.seen).toHaveLength(0);
  });

  it("first endpoint unreachable -> the next one releases the secret", async () => {
    const dead = await startKbs();
    const deadUrl = dead.url;
    await dead.refuseConnections();
    const k = await startKbs();
    const got = await fetchResource(clientOpts([deadUrl, k.url]).opts, sampleAttester(), RESOURCE);
    expect(got.endpoint).toBe(k.url);
  });

  it("wrong path prefix (404 without ErrorInformation, as actix answers) -> kbs-protocol naming the prefix", async () => {
    const k = await startKbs();
    const e = await failure(fetchResource(clientOpts([`${k.url}/wrong`]).opts, sampleAttester(), RESOURCE));
    expect(e.kind).toBe("kbs-protocol");
    expect(e.hint).toMatch(/prefix/);
  });

  it("no session cookie from /auth -> kbs-protocol", async () => {
    const k = await startKbs({ faults: { stripSessionCookie: 1 } });
    const e = await failure(fetchResource(clientOpts([k.url]).opts, sampleAttester(), RESOURCE));
    expect(e.kind).toBe("kbs-protocol");
    expect(e.message).toMatch(/no kbs-session-id cookie/);
  });
});

describe("openKbsSession: several resources under one handshake", () => {
  const OTHER = "default/verity/root";
  const OTHER_VALUE = Buffer.from('{"v":1,"volumes":[]}');

  it("one /auth and /attest, then each resource with the same token; evidence collected once", async () => {
    const k = await startKbs({ resources: { [RESOURCE]: SECRET, [OTHER]: OTHER_VALUE } });
    const attester = sampleAttester();
    const session = await openKbsSession(clientOpts([k.url]).opts, attester);
    const a = await session.fetch(OTHER);
    const b = await session.fetch(RESOURCE);
    expect(Buffer.compare(a.secret, OTHER_VALUE)).toBe(0);
    expect(Buffer.compare(b.secret, SECRET)).toBe(0);
    expect(k.count("/kbs/v0/auth")).toBe(1);
    expect(k.count("/kbs/v0/attest")).toBe(1);
    expect(attester.digests).toHaveLength(1);
    const bearer = (p: string) => k.seen.find((r) => r.path === `/kbs/v0/resource/${p}`)!.headers.authorization;
    expect(bearer(OTHER)).toMatch(/^Bearer /);
    expect(bearer(RESOURCE)).toBe(bearer(OTHER));
  });

  it("the KBS refusing the token for the second resource costs one fresh handshake, not a refusal", async () => {
    const k = await startKbs({ resources: { [RESOURCE]: SECRET, [OTHER]: OTHER_VALUE } });
    const attester = sampleAttester();
    const session = await openKbsSession(clientOpts([k.url], { resourceAttempts: 1 }).opts, attester);
    await session.fetch(OTHER);
    // the token the session holds is now expired (as if its lifetime had passed)
    const token = /^Bearer (.+)$/.exec(k.seen.at(-1)!.headers.authorization ?? "")![1]!;
    k.expireToken(token);
    const b = await session.fetch(RESOURCE);
    expect(Buffer.compare(b.secret, SECRET)).toBe(0);
    expect(k.count("/kbs/v0/attest")).toBe(2);
    expect(attester.digests).toHaveLength(2);
  });

  it("a resource the policy denies fails that fetch only; a bad path is refused before any request", async () => {
    const k = await startKbs({ resources: { [RESOURCE]: SECRET } });
    const session = await openKbsSession(clientOpts([k.url], { resourceAttempts: 2 }).opts, sampleAttester());
    const e = await failure(session.fetch(OTHER));
    expect(e.kind).toBe("resource-missing");
    expect(Buffer.compare((await session.fetch(RESOURCE)).secret, SECRET)).toBe(0);
    const before = k.seen.length;
    expect((await failure(session.fetch("../etc/passwd"))).kind).toBe("config");
    expect(k.seen.length).toBe(before);
  });
});
