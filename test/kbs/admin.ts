// trustee's admin access check (kbs/src/admin, v0.21): InsecureAllowAll | DenyAll |
// AuthenticatedAuthorization = bearer_jwt authentication + regex_acl authorization.
//
// bearer_jwt, per identity provider in order (bearer_jwt.rs, crypto/jwt.rs): the JWS must verify
// with the provider's key under the header's alg (an Ed25519 PEM key only verifies EdDSA);
// jsonwebtoken's Validation requires `exp` and allows 60 s of leeway, ignores `nbf` and `aud`;
// then `iss` must equal the provider's issuer and `aud` (string or array) contain its audience,
// each only when configured; a provider that fails is skipped. The `role` claim is required.
// regex_acl: each rule's regex must start with `^/kbs` and end with `$` (checked at start-up); the
// first rule with the token's role whose regex matches the request URI allows.
import { ed25519 } from "@noble/curves/ed25519.js";
import { bytesEqual, fromB64url, utf8 } from "../../platform/util/bytes.ts";

export interface IdentityProvider {
  issuer?: string;
  audience?: string;
  /** SPKI PEM of an Ed25519 key ("-----BEGIN PUBLIC KEY-----"), as `openssl pkey -pubout` writes. */
  publicKeyPem: string;
}

export interface AclRule {
  role: string;
  allowedEndpoints: string;
}

export type AdminConfig =
  | { mode: "InsecureAllowAll" }
  | { mode: "DenyAll" }
  | { mode: "AuthenticatedAuthorization"; identityProviders: IdentityProvider[]; acls: AclRule[] };

/** admin::Error as trustee displays it (the wire detail wraps this text). */
export class AdminError extends Error {
  override name = "AdminError";
}

const JWT_LEEWAY_S = 60;
const SPKI_ED25519_PREFIX = Uint8Array.from([0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00]);

export function ed25519PublicKeyFromPem(pem: string): Uint8Array {
  const m = /-----BEGIN PUBLIC KEY-----([A-Za-z0-9+/=\s]+)-----END PUBLIC KEY-----/.exec(pem);
  const der = m ? Buffer.from(m[1]!.replace(/\s+/g, ""), "base64") : Buffer.alloc(0);
  if (der.length !== 44 || !bytesEqual(der.subarray(0, 12), SPKI_ED25519_PREFIX))
    throw new AdminError("Failed to parse admin public key");
  return new Uint8Array(der.subarray(12));
}

const denied = (reason: string) => new AdminError(`Admin access denied: ${reason}`);

interface Provider {
  issuer?: string;
  audience?: string;
  key: Uint8Array;
}

export class AdminGate {
  private readonly providers: Provider[] = [];
  private readonly acls: { role: string; regex: RegExp }[] = [];

  constructor(readonly config: AdminConfig) {
    if (config.mode !== "AuthenticatedAuthorization") return;
    if (config.identityProviders.length === 0)
      throw new AdminError("AuthenticatedAuthorization requires at least one `identity_providers` entry");
    for (const p of config.identityProviders)
      this.providers.push({
        ...(p.issuer !== undefined ? { issuer: p.issuer } : {}),
        ...(p.audience !== undefined ? { audience: p.audience } : {}),
        key: ed25519PublicKeyFromPem(p.publicKeyPem),
      });
    for (const a of config.acls) {
      if (!a.allowedEndpoints.startsWith("^/kbs") || !a.allowedEndpoints.endsWith("$"))
        throw new AdminError("Admin Role regex must be anchored.");
      this.acls.push({ role: a.role, regex: new RegExp(a.allowedEndpoints) });
    }
  }

  /** Throws AdminError when the request may not use the admin API. `uri` is the request target. */
  check(uri: string, authorization: string | undefined, nowSec = Math.floor(Date.now() / 1000)): void {
    switch (this.config.mode) {
      case "InsecureAllowAll":
        return;
      case "DenyAll":
        throw denied("Admin access denied as DenyAll authorization_mode is enabled");
    }
    const m = /^Bearer ([^\s]+)$/.exec(authorization ?? "");
    if (!m) throw new AdminError("Failed to parse HTTP Auth Bearer header");
    const role = this.authenticate(m[1]!, nowSec);
    for (const acl of this.acls) if (acl.role === role && acl.regex.test(uri)) return;
    throw denied(`Role ${role} not allowed for path ${uri}`);
  }

  private authenticate(token: string, nowSec: number): string {
    for (const p of this.providers) {
      const claims = verifyEdDsaJwt(token, p.key, nowSec);
      if (claims === undefined) continue;
      const iss = typeof claims.iss === "string" ? claims.iss : "";
      const aud = typeof claims.aud === "string" ? [claims.aud] : Array.isArray(claims.aud) ? claims.aud : [];
      if (p.issuer !== undefined && iss !== p.issuer) continue;
      if (p.audience !== undefined && !aud.includes(p.audience)) continue;
      if (typeof claims.role !== "string")
        throw denied("Failed to parse claims from token: Missing required `role` claim in JWT");
      return claims.role;
    }
    throw denied("Cannot verify token with any of the issuers");
  }
}

/** The claims when `token` is an EdDSA JWS by `key` with a live `exp`; undefined otherwise. */
export function verifyEdDsaJwt(token: string, key: Uint8Array, nowSec: number): Record<string, unknown> | undefined {
  const parts = token.split(".");
  if (parts.length !== 3) return undefined;
  const [h, p, s] = parts as [string, string, string];
  try {
    const header = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(fromB64url(h))) as { alg?: unknown };
    if (header.alg !== "EdDSA") return undefined; // jsonwebtoken: the key family must match alg
    const sig = fromB64url(s);
    if (sig.length !== 64 || !ed25519.verify(sig, utf8(`${h}.${p}`), key)) return undefined;
    const claims = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(fromB64url(p))) as unknown;
    if (claims === null || typeof claims !== "object" || Array.isArray(claims)) return undefined;
    const c = claims as Record<string, unknown>;
    if (typeof c.exp !== "number" || c.exp < nowSec - JWT_LEEWAY_S) return undefined; // exp required
    return c;
  } catch {
    return undefined;
  }
}
