// Decrypts the KBS resource: a flattened JWE (RFC 7516 §7.2.2) as trustee emits it
// (docs/spec/kbs-protocol.md §3.2): enc A256GCM with AAD = ASCII of the received `protected` string,
// alg ECDH-ES+A256KW (Concat KDF SHA-256, AlgorithmID "ECDH-ES+A256KW", empty apu/apv) or
// RSA-OAEP-256. The header is checked strictly against the key we sent: the KBS must not be able
// to steer us to another algorithm or curve. The content key is unwrapped straight into a
// non-extractable CryptoKey; the only secret buffers we hold (Z, the KEK) are zeroed here.
import { sha256 } from "@noble/hashes/sha2.js";
import { fromB64url, utf8 } from "../../platform/util/bytes.ts";
import { CvmError, errorMessage, type ParseSite } from "../../platform/util/errors.ts";
import { EC_COORD_BYTES, type EcCurve, type TeeKeyPair } from "./tee-key.ts";

const ECDH_ALG = "ECDH-ES+A256KW";
const RSA_ALG = "RSA-OAEP-256";
const ENC = "A256GCM";
const IV_BYTES = 12;
const TAG_BYTES = 16;
const CEK_BITS = 256;
/** AES-KW of a 32-byte CEK is 40 bytes (RFC 3394: n+1 64-bit blocks). */
const WRAPPED_CEK_BYTES = 40;
const MAX_PROTECTED_CHARS = 4096;
/** Members that would change how the JWE must be processed; trustee never sends them. */
const UNSUPPORTED_MEMBERS = ["aad", "unprotected", "header", "recipients"];
const UNSUPPORTED_HEADER = ["zip", "crit", "apu", "apv"];

export interface FlattenedJwe {
  protected: string;
  encrypted_key: string;
  iv: string;
  ciphertext: string;
  tag: string;
}

interface ProtectedHeader {
  alg: string;
  enc: string;
  epk?: unknown;
}

/** Our byte arrays are never SharedArrayBuffer-backed; WebCrypto's types insist on saying so. */
function bs(u: Uint8Array): Uint8Array<ArrayBuffer> {
  return u as Uint8Array<ArrayBuffer>;
}

const JWE: ParseSite = {
  structure: "resource JWE",
  kind: "decrypt",
  hint: "the KBS response is not a JWE for this agent's key; check that the KBS is trustee (protocol 0.4.0) and the network path is not rewriting it",
};

function fail(problem: string): never {
  throw new CvmError("decrypt", `${JWE.structure}: ${problem}`, { hint: JWE.hint! });
}

function member(obj: Record<string, unknown>, name: string): string {
  const v = obj[name];
  if (typeof v !== "string") fail(`member '${name}' is ${v === undefined ? "missing" : "not a string"}`);
  return v;
}

function b64urlMember(value: string, name: string): Uint8Array {
  return fromB64url(value, name, JWE);
}

/** Structural check of the flattened JWE JSON (no crypto). */
export function parseFlattenedJwe(body: unknown): FlattenedJwe {
  if (body === null || typeof body !== "object" || Array.isArray(body)) fail("response is not a JSON object");
  const obj = body as Record<string, unknown>;
  for (const m of UNSUPPORTED_MEMBERS) if (m in obj) fail(`member '${m}' is not supported (trustee never sends it)`);
  return {
    protected: member(obj, "protected"),
    encrypted_key: member(obj, "encrypted_key"),
    iv: member(obj, "iv"),
    ciphertext: member(obj, "ciphertext"),
    tag: member(obj, "tag"),
  };
}

function parseProtectedHeader(encoded: string): ProtectedHeader {
  if (encoded.length === 0 || encoded.length > MAX_PROTECTED_CHARS)
    fail(`protected header is ${encoded.length} characters (expected 1..${MAX_PROTECTED_CHARS})`);
  let header: unknown;
  try {
    header = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(b64urlMember(encoded, "protected")));
  } catch (e) {
    if (e instanceof CvmError) throw e;
    fail("protected header is not UTF-8 JSON");
  }
  if (header === null || typeof header !== "object" || Array.isArray(header))
    fail("protected header is not a JSON object");
  const h = header as Record<string, unknown>;
  for (const m of UNSUPPORTED_HEADER) if (m in h) fail(`protected header parameter '${m}' is not supported`);
  if (typeof h.alg !== "string") fail("protected header has no 'alg'");
  if (typeof h.enc !== "string") fail("protected header has no 'enc'");
  return { alg: h.alg, enc: h.enc, epk: h.epk };
}

/** NIST Concat KDF (RFC 7518 §4.6.2) with SHA-256 for a 256-bit key, as trustee's jwe/mod.rs. */
export function concatKdf(z: Uint8Array, algorithmId: string, keyBits = CEK_BITS): Uint8Array {
  if (keyBits !== 256) throw new CvmError("internal", "concatKdf: only 256-bit output (one SHA-256 block) is used");
  const alg = utf8(algorithmId);
  const input = new Uint8Array(4 + z.length + 4 + alg.length + 4 + 4 + 4);
  const view = new DataView(input.buffer);
  let o = 0;
  view.setUint32(o, 1); // round counter
  input.set(z, (o += 4));
  view.setUint32((o += z.length), alg.length);
  input.set(alg, (o += 4));
  view.setUint32((o += alg.length), 0); // PartyUInfo: empty
  view.setUint32((o += 4), 0); // PartyVInfo: empty
  view.setUint32((o += 4), keyBits); // SuppPubInfo
  try {
    return sha256(input);
  } finally {
    input.fill(0);
  }
}

async function unwrapEcdhCek(
  key: TeeKeyPair,
  curve: EcCurve,
  header: ProtectedHeader,
  wrapped: Uint8Array,
): Promise<CryptoKey> {
  const subtle = globalThis.crypto.subtle;
  const epk = header.epk;
  if (epk === null || typeof epk !== "object" || Array.isArray(epk)) fail("protected header has no 'epk' object");
  const e = epk as Record<string, unknown>;
  if (e.kty !== "EC") fail(`epk kty is ${JSON.stringify(e.kty)}, expected "EC"`);
  if (e.crv !== curve) fail(`epk is on curve ${JSON.stringify(e.crv)} but our key is ${curve}`);
  if ("d" in e) fail("epk contains a private key member 'd'");
  const size = EC_COORD_BYTES[curve];
  for (const c of ["x", "y"] as const) {
    if (typeof e[c] !== "string") fail(`epk '${c}' is not a string`);
    const len = b64urlMember(e[c] as string, `epk.${c}`).length;
    if (len !== size) fail(`epk '${c}' is ${len} bytes, ${curve} needs ${size}`);
  }
  if (wrapped.length !== WRAPPED_CEK_BYTES)
    fail(`encrypted_key is ${wrapped.length} bytes, AES-256-KW of the CEK is ${WRAPPED_CEK_BYTES}`);

  let epkKey: CryptoKey;
  try {
    epkKey = await subtle.importKey(
      "jwk",
      { kty: "EC", crv: curve, x: e.x as string, y: e.y as string },
      { name: "ECDH", namedCurve: curve },
      false,
      [],
    );
  } catch (err) {
    return fail(`epk is not a valid ${curve} public key (${errorMessage(err)})`);
  }
  const z = new Uint8Array(await subtle.deriveBits({ name: "ECDH", public: epkKey }, key.privateKey, size * 8));
  const kekBytes = concatKdf(z, ECDH_ALG);
  z.fill(0);
  try {
    const kek = await subtle.importKey("raw", bs(kekBytes), "AES-KW", false, ["unwrapKey"]);
    return await subtle.unwrapKey("raw", bs(wrapped), kek, "AES-KW", { name: "AES-GCM" }, false, ["decrypt"]);
  } catch {
    return fail(
      "AES-KW unwrap of the content key failed its integrity check: it was not encrypted to this agent's key, or epk/encrypted_key were altered",
    );
  } finally {
    kekBytes.fill(0);
  }
}

async function unwrapRsaCek(key: TeeKeyPair, header: ProtectedHeader, wrapped: Uint8Array): Promise<CryptoKey> {
  if (header.epk !== undefined) fail("protected header has an 'epk' but our key is RSA");
  const modulusBytes = (key.privateKey.algorithm as RsaHashedKeyAlgorithm).modulusLength / 8;
  if (wrapped.length !== modulusBytes)
    fail(`encrypted_key is ${wrapped.length} bytes, RSA-${modulusBytes * 8} needs ${modulusBytes}`);
  try {
    return await globalThis.crypto.subtle.unwrapKey(
      "raw",
      bs(wrapped),
      key.privateKey,
      { name: "RSA-OAEP" },
      { name: "AES-GCM" },
      false,
      ["decrypt"],
    );
  } catch {
    return fail(
      "RSA-OAEP-256 decryption of the content key failed: it was not encrypted to this agent's key, or encrypted_key was altered",
    );
  }
}

/**
 * Decrypt the resource JWE with our ephemeral key. Returns the plaintext in a Buffer the caller
 * owns and must zero when done.
 */
export async function decryptResourceJwe(body: unknown, key: TeeKeyPair): Promise<Buffer> {
  const jwe = parseFlattenedJwe(body);
  const header = parseProtectedHeader(jwe.protected);
  const curve = key.publicJwk.kty === "EC" ? key.publicJwk.crv : undefined;
  const expectedAlg = curve ? ECDH_ALG : RSA_ALG;
  if (header.alg !== expectedAlg)
    fail(`alg is ${JSON.stringify(header.alg)} but our ${curve ?? "RSA"} key asked for ${expectedAlg}`);
  if (header.enc !== ENC) fail(`enc is ${JSON.stringify(header.enc)}, only ${ENC} is accepted`);

  const iv = b64urlMember(jwe.iv, "iv");
  if (iv.length !== IV_BYTES) fail(`iv is ${iv.length} bytes, ${ENC} uses ${IV_BYTES}`);
  const tag = b64urlMember(jwe.tag, "tag");
  if (tag.length !== TAG_BYTES) fail(`tag is ${tag.length} bytes, ${ENC} uses ${TAG_BYTES}`);
  const ciphertext = b64urlMember(jwe.ciphertext, "ciphertext");
  const wrapped = b64urlMember(jwe.encrypted_key, "encrypted_key");

  const cek = curve ? await unwrapEcdhCek(key, curve, header, wrapped) : await unwrapRsaCek(key, header, wrapped);
  if ((cek.algorithm as AesKeyAlgorithm).length !== CEK_BITS)
    fail(`content key is ${(cek.algorithm as AesKeyAlgorithm).length} bits, ${ENC} needs ${CEK_BITS}`);

  const sealed = new Uint8Array(ciphertext.length + TAG_BYTES);
  sealed.set(ciphertext);
  sealed.set(tag, ciphertext.length);
  try {
    const plain = await globalThis.crypto.subtle.decrypt(
      { name: "AES-GCM", iv: bs(iv), additionalData: bs(utf8(jwe.protected)), tagLength: TAG_BYTES * 8 },
      cek,
      sealed,
    );
    return Buffer.from(plain);
  } catch {
    throw new CvmError(
      "decrypt",
      "resource JWE failed authentication (AES-256-GCM tag mismatch): the ciphertext, tag, iv or protected header were altered in transit",
      {
        hint: "a proxy or the network modified the KBS response, or the KBS is misbehaving; nothing was released",
      },
    );
  }
}
