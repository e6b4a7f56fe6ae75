// A minimal, independent RCAR client for driving the test KBS in tests (not the agent's client):
// node:http(s) requests, WebCrypto tee keys, and a WebCrypto JWE decryption that shares no code
// with ./jwe.ts. Other engineers can use it to exercise their verifiers end to end.
import * as crypto from "node:crypto";
import * as http from "node:http";
import * as https from "node:https";
import { canonicalJson } from "./jcs.ts";

const subtle = crypto.webcrypto.subtle;

export interface RawResponse {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: string;
}

export interface RawRequest {
  method?: string;
  headers?: Record<string, string>;
  body?: string | Uint8Array;
  ca?: string;
  timeoutMs?: number;
}

export function rawRequest(url: string, req: RawRequest = {}): Promise<RawResponse> {
  const u = new URL(url);
  const mod = u.protocol === "https:" ? https : http;
  const body =
    req.body === undefined ? undefined : typeof req.body === "string" ? Buffer.from(req.body) : Buffer.from(req.body);
  return new Promise((resolve, reject) => {
    const r = mod.request(
      u,
      {
        method: req.method ?? (body ? "POST" : "GET"),
        headers: {
          ...(body ? { "content-type": "application/json", "content-length": String(body.length) } : {}),
          ...req.headers,
        },
        agent: false,
        ...(u.protocol === "https:" ? { ca: req.ca, rejectUnauthorized: true } : {}),
        timeout: req.timeoutMs ?? 10_000,
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (c: Buffer) => chunks.push(c));
        res.on("end", () =>
          resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString("utf8") }),
        );
        res.on("error", reject);
      },
    );
    r.on("timeout", () => r.destroy(new Error("request timed out")));
    r.on("error", reject);
    r.end(body);
  });
}

export type TeeKeyKind = "ec-p256" | "ec-p521" | "ec-p384" | "rsa-oaep-256" | "rsa-oaep" | "rsa1_5";

export interface TeeKey {
  kind: TeeKeyKind;
  /** The tee-pubkey JWK with only kbs-types' typed members. */
  publicJwk: Record<string, string>;
  privateKey: crypto.webcrypto.CryptoKey | crypto.KeyObject;
}

export async function makeTeeKey(kind: TeeKeyKind = "ec-p256"): Promise<TeeKey> {
  if (kind.startsWith("ec-")) {
    const crv = { "ec-p256": "P-256", "ec-p384": "P-384", "ec-p521": "P-521" }[kind as "ec-p256"]!;
    const kp = await subtle.generateKey({ name: "ECDH", namedCurve: crv }, true, ["deriveBits"]);
    const j = await subtle.exportKey("jwk", kp.publicKey);
    return { kind, publicJwk: { kty: "EC", crv, alg: "ECDH-ES+A256KW", x: j.x!, y: j.y! }, privateKey: kp.privateKey };
  }
  const { publicKey, privateKey } = crypto.generateKeyPairSync("rsa", { modulusLength: 2048 });
  const j = publicKey.export({ format: "jwk" });
  const alg = { "rsa-oaep-256": "RSA-OAEP-256", "rsa-oaep": "RSA-OAEP", rsa1_5: "RSA1_5" }[kind as "rsa1_5"]!;
  return { kind, publicJwk: { kty: "RSA", alg, n: j.n!, e: j.e! }, privateKey };
}

export function sampleEvidence(digest: Uint8Array): { svn: string; report_data: string } {
  return { svn: "1", report_data: Buffer.from(digest).toString("base64") };
}

export function digestFor(teePubkey: Record<string, string>, nonce: string, additionalEvidence = ""): Uint8Array {
  const canonical = canonicalJson({ "tee-pubkey": teePubkey, nonce, "additional-evidence": additionalEvidence });
  return new Uint8Array(crypto.createHash("sha384").update(canonical).digest());
}

export function cookieOf(res: RawResponse): string {
  const sc = res.headers["set-cookie"]?.[0] ?? "";
  return sc.split(";")[0]!;
}

export interface Handshake {
  cookie: string;
  nonce: string;
  token: string;
  key: TeeKey;
}

/** /auth + /attest with `sample` evidence; throws with the server's answer on failure. */
export async function sampleHandshake(
  baseUrl: string,
  opts: { key?: TeeKey; ca?: string; tee?: string } = {},
): Promise<Handshake> {
  const key = opts.key ?? (await makeTeeKey());
  const auth = await rawRequest(`${baseUrl}/kbs/v0/auth`, {
    body: JSON.stringify({ version: "0.4.0", tee: opts.tee ?? "sample", "extra-params": "" }),
    ca: opts.ca,
  });
  if (auth.status !== 200) throw new Error(`auth ${auth.status}: ${auth.body}`);
  const nonce = (JSON.parse(auth.body) as { nonce: string }).nonce;
  const cookie = cookieOf(auth);
  const attestation = {
    "init-data": null,
    "runtime-data": { nonce, "tee-pubkey": key.publicJwk },
    "tee-evidence": { primary_evidence: sampleEvidence(digestFor(key.publicJwk, nonce)), additional_evidence: "" },
  };
  const att = await rawRequest(`${baseUrl}/kbs/v0/attest`, {
    body: JSON.stringify(attestation),
    headers: { cookie },
    ca: opts.ca,
  });
  if (att.status !== 200) throw new Error(`attest ${att.status}: ${att.body}`);
  return { cookie, nonce, token: (JSON.parse(att.body) as { token: string }).token, key };
}

// ---- independent JWE decryption (WebCrypto + node:crypto hashes) --------------------------------

const b64u = (s: string) => new Uint8Array(Buffer.from(s, "base64url"));

function concatKdf(z: Uint8Array, alg: string): Uint8Array {
  const be = (n: number) => {
    const b = Buffer.alloc(4);
    b.writeUInt32BE(n);
    return b;
  };
  const a = Buffer.from(alg, "ascii");
  return new Uint8Array(
    crypto
      .createHash("sha256")
      .update(Buffer.concat([be(1), z, be(a.length), a, be(0), be(0), be(256)]))
      .digest(),
  );
}

export async function decryptJwe(jweJson: string, key: TeeKey): Promise<Uint8Array> {
  const jwe = JSON.parse(jweJson) as Record<string, string>;
  const header = JSON.parse(Buffer.from(jwe.protected!, "base64url").toString("utf8")) as {
    alg: string;
    enc: string;
    epk?: Record<string, string>;
  };
  if (header.enc !== "A256GCM") throw new Error(`unexpected enc ${header.enc}`);
  let cek: Uint8Array;
  if (header.alg === "ECDH-ES+A256KW") {
    const epk = await subtle.importKey(
      "jwk",
      { kty: "EC", crv: header.epk!.crv, x: header.epk!.x, y: header.epk!.y },
      { name: "ECDH", namedCurve: header.epk!.crv! },
      false,
      [],
    );
    const bits = header.epk!.crv === "P-521" ? 528 : 256;
    const z = new Uint8Array(
      await subtle.deriveBits({ name: "ECDH", public: epk }, key.privateKey as crypto.webcrypto.CryptoKey, bits),
    );
    const kek = await subtle.importKey("raw", concatKdf(z, header.alg), "AES-KW", false, ["unwrapKey"]);
    const k = await subtle.unwrapKey("raw", b64u(jwe.encrypted_key!), kek, "AES-KW", "AES-GCM", true, ["decrypt"]);
    cek = new Uint8Array(await subtle.exportKey("raw", k));
  } else if (header.alg === "RSA-OAEP-256") {
    const pkcs8 = (key.privateKey as crypto.KeyObject).export({ format: "der", type: "pkcs8" });
    const k = await subtle.importKey("pkcs8", pkcs8, { name: "RSA-OAEP", hash: "SHA-256" }, false, ["decrypt"]);
    cek = new Uint8Array(await subtle.decrypt({ name: "RSA-OAEP" }, k, b64u(jwe.encrypted_key!)));
  } else {
    throw new Error(`decryptJwe: ${header.alg} not handled here (use openssl for RSA1_5)`);
  }
  const gcm = await subtle.importKey("raw", cek, "AES-GCM", false, ["decrypt"]);
  const sealed = Buffer.concat([b64u(jwe.ciphertext!), b64u(jwe.tag!)]);
  return new Uint8Array(
    await subtle.decrypt(
      { name: "AES-GCM", iv: b64u(jwe.iv!), additionalData: Buffer.from(jwe.protected!, "ascii"), tagLength: 128 },
      gcm,
      sealed,
    ),
  );
}
