// The test KBS's admin API must check what trustee v0.21 checks (kbs/src/admin, api_server.rs):
// EdDSA signature by a configured key, exp required (60 s leeway), iss/aud when configured, a role
// claim matched with the path by an anchored regex ACL; DenyAll / InsecureAllowAll; resource
// upload; resource-policy upload in base64url without padding only; the policy then decides.
import * as crypto from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { signAdminToken } from "../../../agent/provision/admin-token.ts";
import { AdminGate } from "../../kbs/admin.ts";
import { rawRequest, sampleHandshake } from "../../kbs/raw-client.ts";
import { startTestKbs, type TestKbs } from "../../kbs/server.ts";

const ERR = "https://github.com/confidential-containers/kbs/errors/";
const pair = () => {
  const { privateKey, publicKey } = crypto.generateKeyPairSync("ed25519");
  return {
    pem: privateKey.export({ type: "pkcs8", format: "pem" }) as string,
    pub: publicKey.export({ type: "spki", format: "pem" }) as string,
    key: privateKey,
  };
};
const owner = pair();
const other = pair();
const b64u = (s: string | Buffer) => Buffer.from(s).toString("base64url");
/** A JWT signed by node's own Ed25519 (independent of the code under test), any header/claims. */
function jwt(claims: object, header: object = { alg: "EdDSA", typ: "JWT" }, key = owner.key): string {
  const input = `${b64u(JSON.stringify(header))}.${b64u(JSON.stringify(claims))}`;
  return `${input}.${b64u(crypto.sign(null, Buffer.from(input), key))}`;
}
const now = () => Math.floor(Date.now() / 1000);
const good = () => ({ iss: "owner", aud: ["kbs", "x"], role: "admin", iat: now(), exp: now() + 300 });

let kbs: TestKbs;
beforeAll(async () => {
  kbs = await startTestKbs({
    admin: {
      mode: "AuthenticatedAuthorization",
      identityProviders: [{ issuer: "owner", audience: "kbs", publicKeyPem: owner.pub }],
      acls: [
        { role: "admin", allowedEndpoints: "^/kbs/v0/(resource/default/.+|resource-policy)$" },
        { role: "uploader", allowedEndpoints: "^/kbs/v0/resource/default/key/[^/]+$" },
      ],
    },
  });
});
afterAll(() => kbs.close());

const upload = (token: string | undefined, p = "default/key/x", body: Buffer = Buffer.from("secret")) =>
  rawRequest(`${kbs.url}/kbs/v0/resource/${p}`, {
    method: "POST",
    body,
    headers: { "content-type": "application/octet-stream", ...(token ? { authorization: `Bearer ${token}` } : {}) },
  });
const setPolicy = (token: string | undefined, body: string) =>
  rawRequest(`${kbs.url}/kbs/v0/resource-policy`, {
    body,
    headers: token ? { authorization: `Bearer ${token}` } : {},
  });
const detailOf = (r: { body: string }) => JSON.parse(r.body) as { type: string; detail: string };

describe("AuthenticatedAuthorization", () => {
  it("a good token stores the raw bytes; trustee's 200 has an empty body", async () => {
    const value = crypto.randomBytes(100);
    const r = await upload(jwt(good()), "default/key/raw", value);
    expect(r.status).toBe(200);
    expect(r.body).toBe("");
    expect(Buffer.from(kbs.resources.get("default/key/raw")!).equals(value)).toBe(true);
  });

  it("our own signer's tokens pass (cross-check with the agent side)", async () => {
    const t = signAdminToken(owner.pem, { role: "admin", issuer: "owner", audience: "kbs" });
    expect((await upload(t, "default/key/signed")).status).toBe(200);
  });

  it.each([
    ["no exp (trustee requires it)", { iss: "owner", aud: "kbs", role: "admin", iat: now() }],
    ["exp more than 60 s ago", { ...good(), exp: now() - 120 }],
    ["another issuer", { ...good(), iss: "mallory" }],
    ["no iss at all", { aud: ["kbs"], role: "admin", exp: now() + 60 }],
    ["an audience that is not configured", { ...good(), aud: "elsewhere" }],
  ])("refused: %s", async (_what, claims) => {
    const r = await upload(jwt(claims), "default/key/refused");
    expect(r.status).toBe(401);
    expect(detailOf(r)).toEqual({
      type: ERR + "AdminAuthInitialization",
      detail:
        "failed to initialize [admin] configuration: Admin access denied: Cannot verify token with any of the issuers",
    });
    expect(kbs.resources.has("default/key/refused")).toBe(false);
  });

  it("exp within the 60 s leeway is still accepted, like jsonwebtoken", async () => {
    expect((await upload(jwt({ ...good(), exp: now() - 30 }))).status).toBe(200);
  });

  it("a token by another key, a wrong alg header, or a broken signature is refused", async () => {
    for (const t of [
      jwt(good(), undefined, other.key),
      jwt(good(), { alg: "ES256", typ: "JWT" }),
      jwt(good()).slice(0, -4) + "AAAA",
      "not.a.jwt",
    ]) {
      const r = await upload(t);
      expect(r.status).toBe(401);
      expect(detailOf(r).detail).toMatch(/Cannot verify token with any of the issuers/);
    }
  });

  it("the role claim is required, and matched with the path by the ACL", async () => {
    const { role: _r, ...noRole } = good();
    expect(detailOf(await upload(jwt(noRole))).detail).toMatch(/Missing required `role` claim in JWT/);
    const uploader = jwt({ ...good(), role: "uploader" });
    expect((await upload(uploader, "default/key/u")).status).toBe(200);
    const r = await upload(uploader, "default/other/u");
    expect(r.status).toBe(401);
    expect(detailOf(r).detail).toBe(
      "failed to initialize [admin] configuration: Admin access denied: Role uploader not allowed for path /kbs/v0/resource/default/other/u",
    );
    expect(detailOf(await setPolicy(uploader, "{}")).type).toBe(ERR + "AdminAuthAccess");
  });

  it("no Authorization header: the Bearer parse fails", async () => {
    const r = await upload(undefined);
    expect(detailOf(r).detail).toBe(
      "failed to initialize [admin] configuration: Failed to parse HTTP Auth Bearer header",
    );
  });

  it("an invalid resource path is a plugin error after the admin check", async () => {
    const r = await upload(jwt(good()), "default/key");
    expect(r.status).toBe(401);
    expect(detailOf(r).type).toBe(ERR + "PluginInternalError");
  });
});

describe("resource policy upload and enforcement", () => {
  const allowOnly = (tag: string) =>
    `package policy\nimport rego.v1\ndefault allow := false\nallow if {\n\tdata.plugin == "resource"\n\tdata["resource-path"] == ["default", "key", "${tag}"]\n\tinput.submods.cpu0["ear.veraison.annotated-evidence"].sample\n}\n`;

  it("base64url without padding is accepted and the policy decides releases", async () => {
    kbs.setResource("default/key/open", "o");
    kbs.setResource("default/key/closed", "c");
    const r = await setPolicy(jwt(good()), JSON.stringify({ policy: b64u(allowOnly("open")) }));
    expect(r.status, r.body).toBe(200);
    expect(kbs.policyText).toBe(allowOnly("open"));
    const hs = await sampleHandshake(kbs.url);
    const get = (p: string) => rawRequest(`${kbs.url}/kbs/v0/resource/${p}`, { headers: { cookie: hs.cookie } });
    expect((await get("default/key/open")).status).toBe(200);
    const denied = await get("default/key/closed");
    expect(detailOf(denied)).toEqual({ type: ERR + "PolicyDeny", detail: "Access denied by policy" });
    kbs.setPolicy("allow");
  });

  it("standard base64 (padding, + or /) is refused, as trustee's URL_SAFE_NO_PAD decoder does", async () => {
    // "?>" encodes to "Pz4=" in standard base64 and "Pz4" in base64url: the padded form is refused.
    const rego = allowOnly("open") + "# ?>?\n";
    const std = Buffer.from(rego).toString("base64");
    expect(std).toMatch(/[+/=]/);
    const r = await setPolicy(jwt(good()), JSON.stringify({ policy: std }));
    expect(r.status).toBe(401);
    expect(detailOf(r).type).toBe(ERR + "ParsePolicyError");
    expect(detailOf(r).detail).toMatch(/^Failed to parse policy: Failed to decode policy/);
  });

  it("a body that is not the SetPolicy JSON, or a policy outside the evaluable subset, is refused", async () => {
    const t = jwt(good());
    expect(detailOf(await setPolicy(t, "policy")).detail).toBe(
      "Failed to parse policy: Illegal SetPolicy Request Json",
    );
    expect(detailOf(await setPolicy(t, "{}")).detail).toBe(
      "Failed to parse policy: No `policy` field inside SetPolicy Request Json",
    );
    const unsupported = "package policy\ndefault allow := false\nallow if {\n\tcount(input.submods) > 0\n}\n";
    const r = await setPolicy(t, JSON.stringify({ policy: b64u(unsupported) }));
    expect(detailOf(r).type).toBe(ERR + "PolicyEngineError");
  });
});

describe("DenyAll and InsecureAllowAll", () => {
  it("DenyAll (the test KBS default) refuses even a valid-looking token; InsecureAllowAll needs none", async () => {
    const deny = await startTestKbs();
    const open = await startTestKbs({ admin: { mode: "InsecureAllowAll" } });
    try {
      const r = await rawRequest(`${deny.url}/kbs/v0/resource/default/key/k`, {
        method: "POST",
        body: "v",
        headers: { authorization: `Bearer ${jwt(good())}` },
      });
      expect(detailOf(r).detail).toBe(
        "failed to initialize [admin] configuration: Admin access denied: Admin access denied as DenyAll authorization_mode is enabled",
      );
      expect(
        (await rawRequest(`${open.url}/kbs/v0/resource/default/key/k`, { method: "POST", body: "v" })).status,
      ).toBe(200);
      expect(Buffer.from(open.resources.get("default/key/k")!).toString()).toBe("v");
    } finally {
      await deny.close();
      await open.close();
    }
  });

  it("an ACL regex not anchored at ^/kbs … $ is a configuration error, as in trustee", () => {
    for (const allowedEndpoints of ["/kbs/v0/resource/.+$", "^/kbs/v0/.+", "^/other$"])
      expect(
        () =>
          new AdminGate({
            mode: "AuthenticatedAuthorization",
            identityProviders: [{ publicKeyPem: owner.pub }],
            acls: [{ role: "admin", allowedEndpoints }],
          }),
      ).toThrow(/must be anchored/);
  });
});
