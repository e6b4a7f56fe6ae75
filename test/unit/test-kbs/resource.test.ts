// GET /kbs/v0/resource: token from cookie then Bearer, token verification, policy, path, JWE that an
// independent WebCrypto/openssl decryption opens.
import { execFileSync } from "node:child_process";
import * as crypto from "node:crypto";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { p256 } from "@noble/curves/nist.js";
import { sha256 } from "@noble/hashes/sha2.js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startTestKbs, type TestKbs } from "../../kbs/server.ts";
import { decryptJwe, makeTeeKey, rawRequest, sampleHandshake, type TeeKeyKind } from "../../kbs/raw-client.ts";

const ERR = "https://github.com/confidential-containers/kbs/errors/";
const SECRET = crypto.randomBytes(64);

let kbs: TestKbs;
beforeAll(async () => {
  kbs = await startTestKbs({ resources: { "default/key/root": SECRET, "a.b/c-d/e_f.1": "dots" } });
});
afterAll(() => kbs.close());

const get = (p: string, headers: Record<string, string> = {}) =>
  rawRequest(`${kbs.url}/kbs/v0/resource/${p}`, { headers });

function expectError(r: { status: number; body: string }, status: number, variant: string, detail: string) {
  expect(r.status).toBe(status);
  expect(JSON.parse(r.body)).toEqual({ type: ERR + variant, detail });
}

describe("resource release", () => {
  it.each<TeeKeyKind>(["ec-p256", "ec-p521", "rsa-oaep-256"])(
    "%s: the JWE opens with an independent WebCrypto decryption",
    async (kind) => {
      const hs = await sampleHandshake(kbs.url, { key: await makeTeeKey(kind) });
      const r = await get("default/key/root", { cookie: hs.cookie });
      expect(r.status).toBe(200);
      expect(r.headers["content-type"]).toBe("application/json");
      const jwe = JSON.parse(r.body);
      expect(Object.keys(jwe)).toEqual(["protected", "encrypted_key", "iv", "ciphertext", "tag"]);
      const header = Buffer.from(jwe.protected, "base64url").toString();
      if (kind.startsWith("ec")) {
        expect(header).toMatch(
          /^\{"alg":"ECDH-ES\+A256KW","enc":"A256GCM","epk":\{"crv":"P-(256|521)","kty":"EC","x":"[\w-]+","y":"[\w-]+"\}\}$/,
        );
        expect(Buffer.from(jwe.encrypted_key, "base64url")).toHaveLength(40);
      } else {
        expect(header).toBe('{"alg":"RSA-OAEP-256","enc":"A256GCM"}');
        expect(Buffer.from(jwe.encrypted_key, "base64url")).toHaveLength(256);
      }
      expect(Buffer.from(jwe.iv, "base64url")).toHaveLength(12);
      expect(Buffer.from(jwe.tag, "base64url")).toHaveLength(16);
      expect(Buffer.from(await decryptJwe(r.body, hs.key)).equals(SECRET)).toBe(true);
    },
  );

  it("RSA1_5: openssl pkeyutl (PKCS#1 v1.5) recovers the CEK and the JWE opens", async () => {
    const hs = await sampleHandshake(kbs.url, { key: await makeTeeKey("rsa1_5") });
    const r = await get("default/key/root", { cookie: hs.cookie });
    expect(r.status).toBe(200);
    const jwe = JSON.parse(r.body);
    expect(Buffer.from(jwe.protected, "base64url").toString()).toBe('{"alg":"RSA1_5","enc":"A256GCM"}');
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "rsa15-"));
    try {
      fs.writeFileSync(
        path.join(dir, "k.pem"),
        (hs.key.privateKey as crypto.KeyObject).export({ format: "pem", type: "pkcs8" }),
      );
      fs.writeFileSync(path.join(dir, "ek"), Buffer.from(jwe.encrypted_key, "base64url"));
      const cek = execFileSync(
        "openssl",
        ["pkeyutl", "-decrypt", "-inkey", "k.pem", "-in", "ek", "-pkeyopt", "rsa_padding_mode:pkcs1"],
        { cwd: dir },
      );
      expect(cek).toHaveLength(32);
      const d = crypto.createDecipheriv("aes-256-gcm", cek, Buffer.from(jwe.iv, "base64url"));
      d.setAAD(Buffer.from(jwe.protected, "ascii"));
      d.setAuthTag(Buffer.from(jwe.tag, "base64url"));
      expect(Buffer.concat([d.update(Buffer.from(jwe.ciphertext, "base64url")), d.final()]).equals(SECRET)).toBe(true);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it("accepts Authorization: Bearer without a cookie (passport mode)", async () => {
    const hs = await sampleHandshake(kbs.url);
    const r = await get("default/key/root", { authorization: `Bearer ${hs.token}` });
    expect(r.status).toBe(200);
    expect(Buffer.from(await decryptJwe(r.body, hs.key)).equals(SECRET)).toBe(true);
  });

  it("a tee-pubkey sent with kid but hashed without it passes (trustee re-serializes typed members)", async () => {
    const key = await makeTeeKey();
    const withKid = { ...key, publicJwk: { ...key.publicJwk, kid: "x" } };
    // sampleHandshake hashes what it sends, so hash by hand: send withKid, bind to the typed key.
    const { digestFor, sampleEvidence, cookieOf } = await import("../../kbs/raw-client.ts");
    const a = await rawRequest(`${kbs.url}/kbs/v0/auth`, {
      body: JSON.stringify({ version: "0.4.0", tee: "sample", "extra-params": "" }),
    });
    const nonce = JSON.parse(a.body).nonce;
    const att = {
      "init-data": null,
      "runtime-data": { nonce, "tee-pubkey": withKid.publicJwk },
      "tee-evidence": { primary_evidence: sampleEvidence(digestFor(key.publicJwk, nonce)), additional_evidence: "" },
    };
    const r = await rawRequest(`${kbs.url}/kbs/v0/attest`, {
      body: JSON.stringify(att),
      headers: { cookie: cookieOf(a) },
    });
    expect(r.status).toBe(200);
  });

  it("allows dots after the first character of each segment", async () => {
    const hs = await sampleHandshake(kbs.url);
    const r = await get("a.b/c-d/e_f.1", { cookie: hs.cookie });
    expect(Buffer.from(await decryptJwe(r.body, hs.key)).toString()).toBe("dots");
  });
});

describe("resource refusals", () => {
  it("no cookie and no bearer: 401 TokenNotFound", async () => {
    expectError(await get("default/key/root"), 401, "TokenNotFound", "Attestation Token not found");
  });

  it("a session that is only authenticated (not attested) has no token", async () => {
    const a = await rawRequest(`${kbs.url}/kbs/v0/auth`, {
      body: JSON.stringify({ version: "0.4.0", tee: "sample", "extra-params": "" }),
    });
    expectError(
      await get("default/key/root", { cookie: a.headers["set-cookie"]![0]!.split(";")[0]! }),
      401,
      "TokenNotFound",
      "Attestation Token not found",
    );
  });

  it("an expired session falls back to the bearer token and otherwise fails", async () => {
    const hs = await sampleHandshake(kbs.url);
    kbs.expireSessions();
    expectError(
      await get("default/key/root", { cookie: hs.cookie }),
      401,
      "TokenNotFound",
      "Attestation Token not found",
    );
    expect((await get("default/key/root", { cookie: hs.cookie, authorization: `Bearer ${hs.token}` })).status).toBe(
      200,
    );
  });

  it("a forged token (same claims, another key in the header) is 401 TokenVerifierError", async () => {
    const hs = await sampleHandshake(kbs.url);
    const [, payload] = hs.token.split(".");
    const sk = p256.utils.randomSecretKey();
    const pub = p256.getPublicKey(sk, false);
    const jwk = {
      kty: "EC",
      crv: "P-256",
      x: Buffer.from(pub.subarray(1, 33)).toString("base64url"),
      y: Buffer.from(pub.subarray(33)).toString("base64url"),
      alg: "ES256",
    };
    const h = Buffer.from(JSON.stringify({ typ: "JWT", alg: "ES256", jwk })).toString("base64url");
    const forged = `${h}.${payload}.${Buffer.from(p256.sign(sha256(Buffer.from(`${h}.${payload}`)), sk, { prehash: false })).toString("base64url")}`;
    expectError(
      await get("default/key/root", { authorization: `Bearer ${forged}` }),
      401,
      "TokenVerifierError",
      "Token Verifier error",
    );
    // Our own header but a signature from another key:
    const [oh] = hs.token.split(".");
    const forged2 = `${oh}.${payload}.${Buffer.from(p256.sign(sha256(Buffer.from(`${oh}.${payload}`)), sk, { prehash: false })).toString("base64url")}`;
    expectError(
      await get("default/key/root", { authorization: `Bearer ${forged2}` }),
      401,
      "TokenVerifierError",
      "Token Verifier error",
    );
    // A modified payload under the original signature:
    const claims = JSON.parse(Buffer.from(payload!, "base64url").toString());
    claims.exp += 3600;
    const tampered = `${oh}.${Buffer.from(JSON.stringify(claims)).toString("base64url")}.${hs.token.split(".")[2]}`;
    expectError(
      await get("default/key/root", { authorization: `Bearer ${tampered}` }),
      401,
      "TokenVerifierError",
      "Token Verifier error",
    );
    expect(kbs.stats.errors.at(-1)!.reason).toMatch(/signature does not verify/);
  });

  it("an expired token is 401 TokenVerifierError", async () => {
    const old = await startTestKbs({ tokenLifetimeSec: -5, tokenLeewaySec: 0, resources: { "default/key/root": "x" } });
    try {
      const hs = await sampleHandshake(old.url);
      const r = await rawRequest(`${old.url}/kbs/v0/resource/default/key/root`, { headers: { cookie: hs.cookie } });
      expect(r.status).toBe(401);
      expect(JSON.parse(r.body).type).toBe(ERR + "TokenVerifierError");
      expect(old.stats.errors.at(-1)!.reason).toMatch(/expired/);
    } finally {
      await old.close();
    }
  });

  it("policy deny is 401 PolicyDeny; a policy function sees the claims and the path", async () => {
    const hs = await sampleHandshake(kbs.url);
    try {
      kbs.setPolicy("deny");
      expectError(await get("default/key/root", { cookie: hs.cookie }), 401, "PolicyDeny", "Access denied by policy");
      const seen: string[] = [];
      kbs.setPolicy((i) => {
        seen.push(`${i.tee}:${i.resourcePath}`);
        return i.resourcePath !== "default/key/root";
      });
      expectError(await get("default/key/root", { cookie: hs.cookie }), 401, "PolicyDeny", "Access denied by policy");
      expect((await get("a.b/c-d/e_f.1", { cookie: hs.cookie })).status).toBe(200);
      expect(seen).toEqual(["sample:default/key/root", "sample:a.b/c-d/e_f.1"]);
    } finally {
      kbs.setPolicy("allow");
    }
  });

  it("missing resource and invalid paths are 401 PluginInternalError; other plugins 404", async () => {
    const hs = await sampleHandshake(kbs.url);
    for (const p of [
      "default/key/absent",
      "default/key",
      "default/key/root/extra",
      ".x/key/root",
      "default/k%20ey/root",
    ]) {
      expectError(await get(p, { cookie: hs.cookie }), 401, "PluginInternalError", "Plugin internal error");
    }
    expectError(
      await rawRequest(`${kbs.url}/kbs/v0/nebula-ca/x`, { headers: { cookie: hs.cookie } }),
      404,
      "PluginNotFound",
      "Plugin nebula-ca not found",
    );
  });

  it("unsupported key choices pass /attest and fail at resource time with 401 JweError", async () => {
    for (const kind of ["ec-p384", "rsa-oaep"] as const) {
      const hs = await sampleHandshake(kbs.url, { key: await makeTeeKey(kind) });
      expectError(await get("default/key/root", { cookie: hs.cookie }), 401, "JweError", "JWE failed");
      expect(kbs.stats.errors.at(-1)!.reason).toMatch(/not supported/);
    }
  });

  it("resource POST (admin) is refused by the default admin mode, DenyAll", async () => {
    const r = await rawRequest(`${kbs.url}/kbs/v0/resource/default/key/new`, { method: "POST", body: "x" });
    expect(r.status).toBe(401);
    expect(JSON.parse(r.body).type).toBe(ERR + "AdminAuthInitialization");
    expect(kbs.resources.has("default/key/new")).toBe(false);
  });
});
