// The resource response exactly as trustee builds it (docs/spec/kbs-protocol.md §3.2): flattened JWE, member
// order protected/encrypted_key/iv/ciphertext/tag, no `aad` member, A256GCM with AAD = the ASCII
// `protected` string, key management chosen by the tee-pubkey:
//   EC P-256/P-521 + ECDH-ES+A256KW (Concat KDF, SHA-256, empty apu/apv), RSA-OAEP-256, RSA1_5.
// Anything else fails like trustee's jwe(): the caller maps the Error to 401 JweError.
import * as crypto from "node:crypto";
import { p256, p521 } from "@noble/curves/nist.js";
import { sha256 } from "@noble/hashes/sha2.js";
import { b64url, concat, fromB64url, utf8 } from "../../platform/util/bytes.ts";
import type { FlattenedJwe } from "../../agent/kbs/jwe.ts";
import type { TeePubKey } from "./messages.ts";

// The wire shape is protocol, not implementation: share the type with the agent's decryptor.
export type { FlattenedJwe } from "../../agent/kbs/jwe.ts";

/** Fixed values for reproducing a vector; production draws all three at random. */
export interface JweDeterminism {
  cek?: Uint8Array;
  iv?: Uint8Array;
  ephemeralSecret?: Uint8Array;
}

const ECDH_ALG = "ECDH-ES+A256KW";
const CURVES = { "P-256": { curve: p256, coordLen: 32 }, "P-521": { curve: p521, coordLen: 66 } } as const;

function u32be(n: number): Uint8Array {
  const b = new Uint8Array(4);
  new DataView(b.buffer).setUint32(0, n);
  return b;
}

/** NIST SP 800-56A Concat KDF for a 256-bit key: one SHA-256 round (RFC 7518 §4.6.2). */
export function concatKdf256(z: Uint8Array, algorithmId: string): Uint8Array {
  const alg = utf8(algorithmId);
  return sha256(concat(u32be(1), z, u32be(alg.length), alg, u32be(0), u32be(0), u32be(256)));
}

async function aesKeyWrap(kek: Uint8Array, cek: Uint8Array): Promise<Uint8Array> {
  // bun's node:crypto lacks id-aes256-wrap; WebCrypto AES-KW works everywhere.
  const wrapping = await crypto.webcrypto.subtle.importKey("raw", kek, "AES-KW", false, ["wrapKey"]);
  const key = await crypto.webcrypto.subtle.importKey("raw", cek, "AES-GCM", true, ["encrypt"]);
  return new Uint8Array(await crypto.webcrypto.subtle.wrapKey("raw", key, wrapping, "AES-KW"));
}

function ecKeyManagement(tpk: Extract<TeePubKey, { kty: "EC" }>, cek: Uint8Array, det: JweDeterminism) {
  if (tpk.alg !== ECDH_ALG) throw new Error(`algorithm ${tpk.alg} is not supported for EC keys`);
  const spec = (CURVES as Record<string, (typeof CURVES)[keyof typeof CURVES]>)[tpk.crv];
  if (!spec) throw new Error(`curve ${tpk.crv} is not supported`);
  const x = fromB64url(tpk.x, "tee-pubkey x");
  const y = fromB64url(tpk.y, "tee-pubkey y");
  if (x.length !== spec.coordLen || y.length !== spec.coordLen) {
    throw new Error(`${tpk.crv} coordinates must be ${spec.coordLen} bytes (got x ${x.length}, y ${y.length})`);
  }
  const recipient = concat(new Uint8Array([4]), x, y);
  const eph = det.ephemeralSecret ?? spec.curve.utils.randomSecretKey();
  const ephPub = spec.curve.getPublicKey(eph, false);
  const z = spec.curve.getSharedSecret(eph, recipient, true).subarray(1); // x coordinate; throws off-curve
  const header = {
    alg: ECDH_ALG,
    enc: "A256GCM",
    epk: {
      crv: tpk.crv,
      kty: "EC",
      x: b64url(ephPub.subarray(1, 1 + spec.coordLen)),
      y: b64url(ephPub.subarray(1 + spec.coordLen)),
    },
  };
  return { header, wrap: () => aesKeyWrap(concatKdf256(z, ECDH_ALG), cek) };
}

function rsaKeyManagement(tpk: Extract<TeePubKey, { kty: "RSA" }>, cek: Uint8Array) {
  const padding = {
    "RSA-OAEP-256": crypto.constants.RSA_PKCS1_OAEP_PADDING,
    RSA1_5: crypto.constants.RSA_PKCS1_PADDING,
  }[tpk.alg];
  if (padding === undefined) throw new Error(`algorithm ${tpk.alg} is not supported for RSA keys`);
  fromB64url(tpk.n, "tee-pubkey n");
  fromB64url(tpk.e, "tee-pubkey e");
  const key = crypto.createPublicKey({ key: { kty: "RSA", n: tpk.n, e: tpk.e }, format: "jwk" });
  const header = { alg: tpk.alg, enc: "A256GCM" };
  const wrap = async () =>
    new Uint8Array(
      crypto.publicEncrypt({ key, padding, ...(tpk.alg === "RSA-OAEP-256" ? { oaepHash: "sha256" } : {}) }, cek),
    );
  return { header, wrap };
}

export async function encryptJwe(
  tpk: TeePubKey,
  plaintext: Uint8Array,
  det: JweDeterminism = {},
): Promise<FlattenedJwe> {
  const cek = det.cek ?? new Uint8Array(crypto.randomBytes(32));
  const iv = det.iv ?? new Uint8Array(crypto.randomBytes(12));
  let km;
  if (tpk.kty === "EC") km = ecKeyManagement(tpk, cek, det);
  else if (tpk.kty === "RSA") km = rsaKeyManagement(tpk, cek);
  else throw new Error(`key type ${tpk.kty} (${tpk.alg}) is not supported by this KBS build`);
  const encryptedKey = await km.wrap();
  const protectedB64 = b64url(utf8(JSON.stringify(km.header)));
  const key = await crypto.webcrypto.subtle.importKey("raw", cek, "AES-GCM", false, ["encrypt"]);
  const sealed = new Uint8Array(
    await crypto.webcrypto.subtle.encrypt(
      { name: "AES-GCM", iv, additionalData: utf8(protectedB64), tagLength: 128 },
      key,
      plaintext,
    ),
  );
  return {
    protected: protectedB64,
    encrypted_key: b64url(encryptedKey),
    iv: b64url(iv),
    ciphertext: b64url(sealed.subarray(0, sealed.length - 16)),
    tag: b64url(sealed.subarray(sealed.length - 16)),
  };
}

/** kbs-types Response serialization: fixed member order, compact. */
export function serializeJwe(jwe: FlattenedJwe): string {
  const { protected: p, encrypted_key, iv, ciphertext, tag } = jwe;
  return JSON.stringify({ protected: p, encrypted_key, iv, ciphertext, tag });
}

/** Test fault: flip one bit of the ciphertext (or the tag when the plaintext is empty). */
export function tamperJwe(jwe: FlattenedJwe, part: "ciphertext" | "tag"): FlattenedJwe {
  const target = part === "ciphertext" && jwe.ciphertext.length > 0 ? "ciphertext" : "tag";
  const bytes = fromB64url(jwe[target]);
  bytes[0] = bytes[0]! ^ 0x01;
  return { ...jwe, [target]: b64url(bytes) };
}
