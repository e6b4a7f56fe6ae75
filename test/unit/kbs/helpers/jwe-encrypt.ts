// The KBS side of the resource JWE, written independently of agent/kbs/jwe.ts with node:crypto
// (ECDH, id-aes256-wrap, aes-256-gcm, RSA-OAEP), following trustee kbs/src/jwe/mod.rs. It
// reproduces the generated vectors byte for byte, so tests can make fresh and tampered JWEs.
import { createCipheriv, createECDH, createHash, createPublicKey, constants, publicEncrypt, randomBytes } from "node:crypto";
import type { TeePubKey } from "../../../../agent/kbs/tee-key.ts";

const CURVE = { "P-256": "prime256v1", "P-521": "secp521r1" } as const;
const b64u = (b: Uint8Array) => Buffer.from(b).toString("base64url");

export interface JweFixed {
  /** Server ephemeral private scalar (hex). */
  ephemeralD?: string;
  cek?: Uint8Array;
  iv?: Uint8Array;
}

export interface FlattenedJweOut {
  protected: string;
  encrypted_key: string;
  iv: string;
  ciphertext: string;
  tag: string;
}

function kdf(z: Buffer): Buffer {
  const alg = Buffer.from("ECDH-ES+A256KW");
  const u32 = (n: number) => {
    const b = Buffer.alloc(4);
    b.writeUInt32BE(n);
    return b;
  };
  return createHash("sha256").update(Buffer.concat([u32(1), z, u32(alg.length), alg, u32(0), u32(0), u32(256)])).digest();
}

export function encryptToTeeKey(tpk: TeePubKey, plaintext: Uint8Array, fixed: JweFixed = {}): FlattenedJweOut {
  const cek = Buffer.from(fixed.cek ?? randomBytes(32));
  const iv = Buffer.from(fixed.iv ?? randomBytes(12));
  let header: string;
  let encryptedKey: Buffer;
  if (tpk.kty === "EC") {
    const ecdh = createECDH(CURVE[tpk.crv]);
    if (fixed.ephemeralD) ecdh.setPrivateKey(Buffer.from(fixed.ephemeralD, "hex"));
    else ecdh.generateKeys();
    const pub = ecdh.getPublicKey();
    const n = (pub.length - 1) / 2;
    const epk = { crv: tpk.crv, kty: "EC", x: b64u(pub.subarray(1, 1 + n)), y: b64u(pub.subarray(1 + n)) };
    const peer = Buffer.concat([Buffer.from([4]), Buffer.from(tpk.x, "base64url"), Buffer.from(tpk.y, "base64url")]);
    const kek = kdf(ecdh.computeSecret(peer));
    const wrap = createCipheriv("id-aes256-wrap", kek, Buffer.from("A6A6A6A6A6A6A6A6", "hex"));
    encryptedKey = Buffer.concat([wrap.update(cek), wrap.final()]);
    header = JSON.stringify({ alg: tpk.alg, enc: "A256GCM", epk });
  } else {
    const key = createPublicKey({ key: { kty: "RSA", n: tpk.n, e: tpk.e }, format: "jwk" });
    encryptedKey = publicEncrypt({ key, padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: "sha256" }, cek);
    header = JSON.stringify({ alg: tpk.alg, enc: "A256GCM" });
  }
  return sealWithCek(header, encryptedKey, cek, iv, plaintext);
}

/** AES-256-GCM part with AAD = ASCII of the protected string, as trustee does. */
export function sealWithCek(headerJson: string, encryptedKey: Uint8Array, cek: Uint8Array, iv: Uint8Array, plaintext: Uint8Array): FlattenedJweOut {
  const protectedB64 = b64u(Buffer.from(headerJson));
  const gcm = createCipheriv("aes-256-gcm", cek, iv);
  gcm.setAAD(Buffer.from(protectedB64, "ascii"));
  const ciphertext = Buffer.concat([gcm.update(plaintext), gcm.final()]);
  return { protected: protectedB64, encrypted_key: b64u(encryptedKey), iv: b64u(iv), ciphertext: b64u(ciphertext), tag: b64u(gcm.getAuthTag()) };
}
