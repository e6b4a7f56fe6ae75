// The attestation token: an ES256 JWT shaped like trustee's EAR token (docs/spec/kbs-protocol.md §5.1), signed
// with a key generated at start-up. Verification is stricter than trustee with insecure_header_jwk:
// the header jwk must be this KBS's own key (like trustee with a trusted JWK set), so a token signed
// by anyone else is rejected. `exp` is checked with jsonwebtoken's default 60 s leeway.
import { p256 } from "@noble/curves/nist.js";
import { sha256 } from "@noble/hashes/sha2.js";
import { b64url, fromB64url, utf8 } from "../../platform/util/bytes.ts";

export const EAR_PROFILE = "tag:github.com,2024:confidential-containers/Trustee";
export const ANNOTATED_EVIDENCE = "ear.veraison.annotated-evidence";

export interface TokenClaims {
  iat: number;
  exp: number;
  [claim: string]: unknown;
}

export class TokenError extends Error {
  override name = "TokenError";
}

export interface EarInput {
  tee: string;
  teeClaims: Record<string, unknown>;
  reportDataHex: string;
  runtimeDataClaims: Record<string, unknown>;
  initDataHex?: string;
}

export class TokenIssuer {
  private readonly secret = p256.utils.randomSecretKey();
  private readonly pub = p256.getPublicKey(this.secret, false);
  readonly jwk = {
    kty: "EC",
    crv: "P-256",
    x: b64url(this.pub.subarray(1, 33)),
    y: b64url(this.pub.subarray(33)),
    alg: "ES256",
  };

  constructor(
    readonly lifetimeSec = 300,
    readonly leewaySec = 60,
  ) {}

  earClaims(input: EarInput, nowSec = Math.floor(Date.now() / 1000)): TokenClaims {
    const annotated: Record<string, unknown> = {
      [input.tee]: input.teeClaims,
      report_data: input.reportDataHex,
      runtime_data_claims: input.runtimeDataClaims,
    };
    if (input.initDataHex !== undefined) annotated.init_data = input.initDataHex;
    return {
      eat_profile: EAR_PROFILE,
      iat: nowSec,
      "ear.verifier-id": { developer: "https://confidentialcontainers.org", build: "cvm-unlock test-kbs" },
      submods: {
        cpu0: {
          "ear.status": "affirming",
          "ear.trustworthiness-vector": {
            configuration: 2,
            executables: 3,
            hardware: 2,
            "instance-identity": 2,
            "runtime-opaque": 2,
            "storage-opaque": 2,
          },
          "ear.appraisal-policy-id": "default",
          [ANNOTATED_EVIDENCE]: annotated,
        },
      },
      exp: nowSec + this.lifetimeSec,
      iss: "CoCo-Attestation-Service",
    };
  }

  sign(claims: TokenClaims): string {
    const header = { typ: "JWT", alg: "ES256", jwk: this.jwk };
    const input = `${b64url(utf8(JSON.stringify(header)))}.${b64url(utf8(JSON.stringify(claims)))}`;
    const sig = p256.sign(sha256(utf8(input)), this.secret, { prehash: false });
    return `${input}.${b64url(sig)}`;
  }

  /** Returns the claims of a token this KBS issued and that has not expired; throws TokenError otherwise. */
  verify(token: string, nowSec = Math.floor(Date.now() / 1000)): TokenClaims {
    const parts = token.split(".");
    if (parts.length !== 3) throw new TokenError("token is not a JWS compact serialization (3 parts)");
    const [h, p, s] = parts as [string, string, string];
    let header: { alg?: unknown; jwk?: { x?: unknown; y?: unknown } };
    let claims: TokenClaims;
    let sig: Uint8Array;
    try {
      header = JSON.parse(new TextDecoder().decode(fromB64url(h)));
      claims = JSON.parse(new TextDecoder().decode(fromB64url(p)));
      sig = fromB64url(s);
    } catch (e) {
      throw new TokenError(`token is malformed: ${(e as Error).message}`);
    }
    if (header.alg !== "ES256") throw new TokenError(`token alg ${String(header.alg)} is not ES256`);
    if (header.jwk?.x !== this.jwk.x || header.jwk?.y !== this.jwk.y)
      throw new TokenError("token header jwk is not this KBS's signing key");
    if (sig.length !== 64 || !p256.verify(sig, sha256(utf8(`${h}.${p}`)), this.pub, { prehash: false, lowS: false })) {
      throw new TokenError("token signature does not verify");
    }
    if (typeof claims !== "object" || claims === null || typeof claims.exp !== "number")
      throw new TokenError("token has no numeric exp");
    if (claims.exp + this.leewaySec < nowSec) throw new TokenError(`token expired at ${claims.exp} (now ${nowSec})`);
    if (typeof claims.nbf === "number" && claims.nbf - this.leewaySec > nowSec)
      throw new TokenError("token not yet valid (nbf)");
    return claims;
  }
}

/** The tee-pubkey trustee takes from the verified claims (first matching path, §1.4 point 6). */
export function teePubkeyFromClaims(claims: TokenClaims): unknown {
  const at = (path: string[]): unknown =>
    path.reduce<unknown>(
      (o, k) => (o !== null && typeof o === "object" ? (o as Record<string, unknown>)[k] : undefined),
      claims,
    );
  const paths = [
    ["tdx", "attester_runtime_data", "tee-pubkey"],
    ["tdx", "attester_user_data", "tee-pubkey"],
    ["customized_claims", "runtime_data", "tee-pubkey"],
    ["submods", "cpu0", ANNOTATED_EVIDENCE, "runtime_data_claims", "tee-pubkey"],
    ["tee-pubkey"],
  ];
  for (const p of paths) {
    const v = at(p);
    if (v !== undefined) return v;
  }
  return undefined;
}
