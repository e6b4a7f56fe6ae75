// The ephemeral TEE key pair the KBS encrypts the resource to (docs/spec/kbs-protocol.md §3.1).
// The private key is a non-extractable WebCrypto key, so its bytes never exist in JS memory.
// The public JWK carries only the members trustee's typed TeePubKey keeps: any extra member
// (ext, key_ops, use, kid) is dropped when the server re-serializes it, and the runtime-data
// hash would no longer match the one bound into the evidence.
import { fromB64url } from "../../platform/util/bytes.ts";
import { CvmError } from "../../platform/util/errors.ts";
import type { TeeKeyType } from "./types.ts";

export type EcCurve = "P-256" | "P-521";

export interface EcTeePubKey {
  kty: "EC";
  crv: EcCurve;
  alg: "ECDH-ES+A256KW";
  x: string;
  y: string;
}

export interface RsaTeePubKey {
  kty: "RSA";
  alg: "RSA-OAEP-256";
  n: string;
  e: string;
}

export type TeePubKey = EcTeePubKey | RsaTeePubKey;

export interface TeeKeyPair {
  type: TeeKeyType;
  /** Exactly what goes into runtime-data "tee-pubkey" (member order as trustee's reference client). */
  publicJwk: TeePubKey;
  /** Non-extractable; usages: deriveBits (EC) or unwrapKey (RSA). */
  privateKey: CryptoKey;
}

/** Coordinate size in bytes per curve: trustee decodes into [u8; 32] / [u8; 66]. */
export const EC_COORD_BYTES: Record<EcCurve, number> = { "P-256": 32, "P-521": 66 };

const RSA_BITS = 2048;

export function curveOf(type: TeeKeyType): EcCurve | undefined {
  return type === "ec-p256" ? "P-256" : type === "ec-p521" ? "P-521" : undefined;
}

export async function generateTeeKey(type: TeeKeyType): Promise<TeeKeyPair> {
  const subtle = globalThis.crypto.subtle;
  const curve = curveOf(type);
  if (curve) {
    const pair = await subtle.generateKey({ name: "ECDH", namedCurve: curve }, false, ["deriveBits"]);
    const jwk = await subtle.exportKey("jwk", pair.publicKey);
    return { type, publicJwk: ecPublicJwk(curve, jwk), privateKey: pair.privateKey };
  }
  if (type === "rsa-oaep-256") {
    const pair = await subtle.generateKey(
      { name: "RSA-OAEP", modulusLength: RSA_BITS, publicExponent: new Uint8Array([1, 0, 1]), hash: "SHA-256" },
      false,
      ["unwrapKey"],
    );
    const jwk = await subtle.exportKey("jwk", pair.publicKey);
    return { type, publicJwk: rsaPublicJwk(jwk), privateKey: pair.privateKey };
  }
  throw new CvmError("config", `unknown TEE key type '${String(type)}'`, {
    hint: "use ec-p256, ec-p521 or rsa-oaep-256",
  });
}

/** Build the typed EC tee-pubkey from an exported JWK, checking the coordinate sizes trustee requires. */
export function ecPublicJwk(curve: EcCurve, jwk: JsonWebKey): EcTeePubKey {
  const x = requireCoordinate(jwk.x, "x", curve);
  const y = requireCoordinate(jwk.y, "y", curve);
  return { kty: "EC", crv: curve, alg: "ECDH-ES+A256KW", x, y };
}

export function rsaPublicJwk(jwk: JsonWebKey): RsaTeePubKey {
  if (typeof jwk.n !== "string" || typeof jwk.e !== "string")
    throw new CvmError("internal", "RSA public JWK lacks n/e");
  return { kty: "RSA", alg: "RSA-OAEP-256", n: jwk.n, e: jwk.e };
}

function requireCoordinate(v: string | undefined, name: string, curve: EcCurve): string {
  const want = EC_COORD_BYTES[curve];
  if (typeof v !== "string" || fromB64url(v, `${curve} ${name}`).length !== want)
    throw new CvmError("internal", `${curve} public key coordinate ${name} is not ${want} bytes of unpadded base64url`);
  return v;
}
