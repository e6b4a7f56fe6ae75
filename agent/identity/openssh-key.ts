// OpenSSH ed25519 host keys: the "openssh-key-v1" private key format (OpenSSH PROTOCOL.key) and the
// public key blob / line / fingerprint (RFC 8709, ssh-keygen -l). Pure codec. The private key comes
// from the KBS (network input): everything is bounded and checked, and only an unencrypted file
// holding exactly one ssh-ed25519 key whose halves agree is accepted. The agent never hands the
// received bytes to sshd: it re-encodes the validated key (encodeOpensshPrivateKey), so sshd only
// ever parses what this module wrote.
//
//   "openssh-key-v1\0" string ciphername ("none") string kdfname ("none") string kdfoptions ("")
//   uint32 nkeys (1) string publickey string private-section
//   private-section = uint32 checkint, uint32 checkint (equal), string "ssh-ed25519", string pk(32),
//                     string sk(64 = seed || pk), string comment, padding 1,2,3,... to a multiple of 8
import { ed25519 } from "@noble/curves/ed25519.js";
import { sha256 } from "@noble/hashes/sha2.js";
import { bytesEqual } from "../../platform/util/bytes.ts";
import { ParseError, type ParseSite } from "../../platform/util/errors.ts";
import { SshReader, SshWriter } from "./ssh-wire.ts";
import { decodeBase64, encodeBase64 } from "./secret-base64.ts";

export const ED25519 = "ssh-ed25519";
const MAGIC = "openssh-key-v1\0";
const PEM_BEGIN = "-----BEGIN OPENSSH PRIVATE KEY-----";
const PEM_END = "-----END OPENSSH PRIVATE KEY-----";
/** ssh-keygen's block size for cipher "none". */
const BLOCK = 8;
/** An ed25519 key file is ~400 bytes; a long comment fits easily. */
export const MAX_PRIVATE_KEY_FILE = 8 * 1024;
const MAX_COMMENT = 1024;
const NEWLINE = Uint8Array.of(0x0a);

const SITE: ParseSite = {
  structure: "OpenSSH private key",
  kind: "kbs-protocol",
  hint: "store an unencrypted ed25519 key as written by `ssh-keygen -t ed25519 -N ''` or `cvm-unlock bind --ssh-identity` (docs/SSH-IDENTITY.md)",
};

/** A validated ed25519 host key. `seed` is secret: the owner of the object zeroes it (dispose()). */
export class Ed25519HostKey {
  constructor(
    readonly publicKey: Uint8Array,
    readonly seed: Buffer,
    readonly comment: string,
    readonly checkint: number,
  ) {}
  dispose(): void {
    this.seed.fill(0);
  }
}

/** The public key blob: string "ssh-ed25519", string pk. */
export function publicKeyBlob(publicKey: Uint8Array): Uint8Array {
  return new SshWriter().string(ED25519).string(publicKey).finish();
}

/** "ssh-ed25519 AAAA... comment" as in a .pub file and known_hosts. */
export function publicKeyLine(publicKey: Uint8Array, comment = ""): string {
  const b64 = Buffer.from(publicKeyBlob(publicKey)).toString("base64");
  return comment ? `${ED25519} ${b64} ${comment}` : `${ED25519} ${b64}`;
}

/** "SHA256:<unpadded base64>" of the public key blob, exactly as ssh-keygen -l prints it. */
export function sshFingerprint(blob: Uint8Array): string {
  return `SHA256:${Buffer.from(sha256(blob)).toString("base64").replace(/=+$/, "")}`;
}

/** Strict PEM armour: BEGIN line, base64 lines, END line, optional final newline. Returns the binary (caller zeroes). */
function dearmor(text: Uint8Array): Buffer {
  if (text.length > MAX_PRIVATE_KEY_FILE)
    throw new ParseError(SITE, "file", 0, `${text.length} bytes, over the limit of ${MAX_PRIVATE_KEY_FILE}`);
  const begin = Buffer.from(`${PEM_BEGIN}\n`, "latin1");
  const endLine = Buffer.from(`\n${PEM_END}`, "latin1");
  let stop = text.length;
  if (text[stop - 1] === 0x0a) stop--;
  if (!bytesEqual(text.subarray(0, begin.length), begin))
    throw new ParseError(SITE, "armor", 0, `must start with the line ${PEM_BEGIN}`);
  if (stop < begin.length + endLine.length || !bytesEqual(text.subarray(stop - endLine.length, stop), endLine))
    throw new ParseError(SITE, "armor", stop, `must end with the line ${PEM_END}`);
  // The base64 lines without their line breaks, in a buffer of our own (zeroed below).
  const body = Buffer.alloc(stop - endLine.length - begin.length);
  let n = 0;
  for (let i = begin.length; i < stop - endLine.length; i++) if (text[i] !== 0x0a) body[n++] = text[i]!;
  try {
    const bin = decodeBase64(body.subarray(0, n));
    if (!Buffer.isBuffer(bin))
      throw new ParseError(SITE, "armor", begin.length + bin.badAt, "the body is not canonical padded base64");
    return bin;
  } finally {
    body.fill(0);
  }
}

/** Parse and check an OpenSSH private key file (PEM text). The returned seed is a fresh buffer; the input is not kept. */
export function parseOpensshPrivateKey(text: Uint8Array): Ed25519HostKey {
  const bin = dearmor(text);
  try {
    return parseBinary(bin);
  } finally {
    bin.fill(0);
  }
}

function parseBinary(bin: Uint8Array): Ed25519HostKey {
  const r = new SshReader(bin, SITE);
  const magic = r.bytes(MAGIC.length, "magic");
  if (Buffer.from(magic).toString("latin1") !== MAGIC) r.fail("magic", `is not ${JSON.stringify(MAGIC)}`, 0);
  const cipher = r.text("ciphername");
  if (cipher !== "none")
    r.fail(
      "ciphername",
      `is ${JSON.stringify(cipher)}: the key is passphrase-protected; the agent accepts only "none"`,
    );
  const kdf = r.text("kdfname");
  if (kdf !== "none") r.fail("kdfname", `is ${JSON.stringify(kdf)}, expected "none" (no passphrase)`);
  if (r.string("kdfoptions", 0).length !== 0) r.fail("kdfoptions", "must be empty");
  const n = r.u32("nkeys");
  if (n !== 1) r.fail("nkeys", `is ${n}, expected exactly one key`);
  const pubBlob = r.string("publickey", 256);
  const pub = parsePublicBlob(pubBlob, "publickey");
  const privAt = r.offset;
  const priv = r.string("private section", 2048);
  r.end("end");
  if (priv.length % BLOCK !== 0)
    r.fail("private section", `length ${priv.length} is not a multiple of the block size ${BLOCK}`, privAt);

  const p = new SshReader(priv, { ...SITE, structure: `${SITE.structure} private section` });
  const check1 = p.u32("checkint1");
  const check2 = p.u32("checkint2");
  if (check1 !== check2) p.fail("checkint2", "differs from checkint1 (wrong passphrase or corrupt key)");
  p.expect("keytype", ED25519);
  const pk = p.string("public key", 32);
  if (pk.length !== 32) p.fail("public key", `is ${pk.length} bytes, expected 32`);
  if (!bytesEqual(pk, pub)) p.fail("public key", "differs from the file's public key");
  const skAt = p.offset;
  const sk = p.string("private key", 64);
  if (sk.length !== 64) p.fail("private key", `is ${sk.length} bytes, expected 64 (seed || public key)`, skAt);
  if (!bytesEqual(sk.subarray(32), pub)) p.fail("private key", "its public half differs from the public key", skAt);
  const seed = Buffer.from(sk.subarray(0, 32));
  try {
    if (!bytesEqual(ed25519.getPublicKey(seed), pub))
      p.fail("private key", "its seed does not derive the public key", skAt);
    const comment = p.text("comment", MAX_COMMENT);
    for (let i = 1; p.remaining > 0; i++) {
      const at = p.offset;
      if (p.bytes(1, "padding")[0] !== i) p.fail("padding", `byte ${i} is not ${i}`, at);
    }
    return new Ed25519HostKey(new Uint8Array(pub), seed, comment, check1);
  } catch (e) {
    seed.fill(0);
    throw e;
  }
}

/** The 32-byte key of an "ssh-ed25519" public key blob; anything else is refused. */
export function parsePublicBlob(blob: Uint8Array, field: string, site: ParseSite = SITE): Uint8Array {
  const r = new SshReader(blob, { ...site, structure: `${site.structure} ${field}` });
  r.expect("keytype", ED25519);
  const pk = r.string("key", 32);
  if (pk.length !== 32) r.fail("key", `is ${pk.length} bytes, expected 32`);
  r.end("end");
  return pk;
}

/** The key file sshd reads (PEM text, unencrypted). Secret: the caller zeroes it after writing. */
export function encodeOpensshPrivateKey(key: Ed25519HostKey): Buffer {
  const sk = Buffer.alloc(64);
  sk.set(key.seed, 0);
  sk.set(key.publicKey, 32);
  const section = new SshWriter()
    .u32(key.checkint)
    .u32(key.checkint)
    .string(ED25519)
    .string(key.publicKey)
    .string(sk)
    .string(key.comment);
  const pad = new Uint8Array((BLOCK - (section.length % BLOCK)) % BLOCK).map((_, i) => i + 1);
  const privSection = section.raw(pad).finish();
  const bin = new SshWriter()
    .raw(new TextEncoder().encode(MAGIC))
    .string("none")
    .string("none")
    .string(new Uint8Array(0))
    .u32(1)
    .string(publicKeyBlob(key.publicKey))
    .string(privSection)
    .finish();
  const b64 = encodeBase64(bin);
  // ssh-keygen's layout: 70 characters a line.
  const lines = new SshWriter().raw(Buffer.from(`${PEM_BEGIN}\n`, "latin1"));
  for (let i = 0; i < b64.length; i += 70) lines.raw(b64.subarray(i, i + 70)).raw(NEWLINE);
  const out = lines.raw(Buffer.from(`${PEM_END}\n`, "latin1")).finish();
  // Every intermediate copy held the seed.
  for (const b of [sk, privSection, bin, b64]) b.fill(0);
  return out;
}

/** A new host key from 32 random bytes (bind --ssh-identity, on the owner's machine). */
export function generateEd25519HostKey(comment: string, random: (n: number) => Uint8Array): Ed25519HostKey {
  const seed = Buffer.from(random(32));
  const checkint = new DataView(random(4).buffer).getUint32(0);
  return new Ed25519HostKey(ed25519.getPublicKey(seed), seed, comment, checkint);
}
