// The bearer token for trustee's admin API (kbs/src/admin, AuthenticatedAuthorization with a
// bearer_jwt identity provider): a JWS with header {"alg":"EdDSA","typ":"JWT"} signed by an Ed25519
// key whose public half the KBS lists in `identity_providers[].public_key_uri`. trustee requires
// `exp` (jsonwebtoken's Validation) and a `role` claim its regex ACL matches; `iss` and `aud` are
// compared only when the provider entry names them. Either we sign one (short-lived) from the
// owner's private key, or the owner hands us a token file (kbs-client's --admin-token-file).
import { ed25519 } from "@noble/curves/ed25519.js";
import { b64url, bytesEqual, fromB64url, utf8 } from "../../platform/util/bytes.ts";
import { CvmError } from "../../platform/util/errors.ts";
import { readOptionFile } from "../cli/option-file.ts";

/** Lifetime of a token we sign: long enough for one bind, short enough to be useless when leaked. */
export const ADMIN_TOKEN_LIFETIME_S = 300;
const MAX_KEY_FILE_BYTES = 16 * 1024;
const MAX_TOKEN_BYTES = 16 * 1024;
/** PKCS#8 PrivateKeyInfo for Ed25519 (RFC 8410 §7), up to the 32-byte seed (what openssl genpkey writes). */
const PKCS8_ED25519_PREFIX = Uint8Array.from([
  0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
]);
const JWS_COMPACT = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/;

export interface AdminClaimsOptions {
  role: string;
  issuer?: string;
  audience?: string;
  nowSec?: number;
  lifetimeSec?: number;
}

/** The 32-byte Ed25519 seed of an unencrypted PKCS#8 PEM ("-----BEGIN PRIVATE KEY-----"). */
export function ed25519SeedFromPem(pem: string, what = "admin key"): Uint8Array {
  const m = /-----BEGIN PRIVATE KEY-----([A-Za-z0-9+/=\s]+)-----END PRIVATE KEY-----/.exec(pem);
  if (!m)
    throw new CvmError("usage", `${what}: no unencrypted PKCS#8 "PRIVATE KEY" PEM block`, {
      hint: "create one with `openssl genpkey -algorithm ed25519 -out admin.key`",
    });
  const der = Buffer.from(m[1]!.replace(/\s+/g, ""), "base64");
  try {
    if (der.length !== PKCS8_ED25519_PREFIX.length + 32 || !bytesEqual(der.subarray(0, 16), PKCS8_ED25519_PREFIX))
      throw new CvmError("usage", `${what}: not an Ed25519 private key (PKCS#8, OID 1.3.101.112)`, {
        hint: "trustee's admin tokens are EdDSA: `openssl genpkey -algorithm ed25519`",
      });
    return Uint8Array.from(der.subarray(16));
  } finally {
    der.fill(0);
  }
}

/** Sign an admin JWT with the Ed25519 key in `pem`. The seed copy is zeroed before returning. */
export function signAdminToken(pem: string, o: AdminClaimsOptions): string {
  const now = o.nowSec ?? Math.floor(Date.now() / 1000);
  const claims: Record<string, unknown> = {
    ...(o.issuer !== undefined ? { iss: o.issuer } : {}),
    ...(o.audience !== undefined ? { aud: o.audience } : {}),
    role: o.role,
    iat: now,
    exp: now + (o.lifetimeSec ?? ADMIN_TOKEN_LIFETIME_S),
  };
  const input = `${b64url(utf8(JSON.stringify({ alg: "EdDSA", typ: "JWT" })))}.${b64url(utf8(JSON.stringify(claims)))}`;
  const seed = ed25519SeedFromPem(pem);
  try {
    return `${input}.${b64url(ed25519.sign(utf8(input), seed))}`;
  } finally {
    seed.fill(0);
  }
}

export function signAdminTokenFromFile(file: string, o: AdminClaimsOptions): string {
  const pem = readOptionFile(file, MAX_KEY_FILE_BYTES, "--admin-key");
  try {
    return signAdminToken(pem.toString("utf8"), o);
  } finally {
    pem.fill(0);
  }
}

/**
 * A token the owner obtained elsewhere (trustee's setup writes `admin-token`). Checked for shape
 * and, when its payload is readable, for `exp`: an expired token would only earn a 401 later.
 */
export function readAdminTokenFile(file: string, nowSec = Math.floor(Date.now() / 1000)): string {
  const token = readOptionFile(file, MAX_TOKEN_BYTES, "--admin-token-file").toString("utf8").trim();
  if (!JWS_COMPACT.test(token))
    throw new CvmError("usage", `--admin-token-file ${file} does not hold a JWT (header.payload.signature)`);
  let claims: { exp?: unknown; role?: unknown };
  try {
    claims = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(fromB64url(token.split(".")[1]!)));
  } catch {
    throw new CvmError("usage", `--admin-token-file ${file}: the JWT payload is not JSON`);
  }
  if (typeof claims.exp !== "number")
    throw new CvmError("usage", `--admin-token-file ${file}: the token has no numeric exp (trustee requires one)`);
  if (claims.exp < nowSec)
    throw new CvmError(
      "usage",
      `--admin-token-file ${file}: the token expired at ${new Date(claims.exp * 1000).toISOString()}`,
      {
        hint: "issue a new admin token, or sign one per run with --admin-key",
      },
    );
  if (typeof claims.role !== "string")
    throw new CvmError(
      "usage",
      `--admin-token-file ${file}: the token has no role claim (trustee's regex ACL needs one)`,
    );
  return token;
}
