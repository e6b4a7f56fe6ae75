// OpenSSH host certificates for ed25519 keys ("ssh-ed25519-cert-v01@openssh.com", OpenSSH
// PROTOCOL.certkeys). Pure codec + checks. The certificate comes from the KBS next to the host key;
// it is accepted only when it certifies *that* key as a host (type 2), its validity window is
// well-formed, it carries no critical option (none is defined for host certificates, and an unknown
// one must not be ignored), and its CA signature verifies. The agent checks the signature itself
// for ed25519 CAs and refuses other CA key types rather than pass on a certificate it cannot check.
// It does not pin *which* CA: the KBS that released the key is the authority; users pin the CA
// with their @cert-authority line.
//
//   string "ssh-ed25519-cert-v01@openssh.com"  string nonce  string pk(32)  uint64 serial
//   uint32 type  string key_id  string valid_principals  uint64 valid_after  uint64 valid_before
//   string critical_options  string extensions  string reserved  string signature_key  string signature
import { ed25519 } from "@noble/curves/ed25519.js";
import { bytesEqual } from "../../platform/util/bytes.ts";
import { ParseError, type ParseSite } from "../../platform/util/errors.ts";
import { ED25519, parsePublicBlob, sshFingerprint } from "./openssh-key.ts";
import { SshReader } from "./ssh-wire.ts";

export const ED25519_CERT = "ssh-ed25519-cert-v01@openssh.com";
export const SSH_CERT_TYPE_HOST = 2;
export const MAX_CERTIFICATE_FILE = 16 * 1024;
const MAX_PRINCIPALS = 256;

const SITE: ParseSite = {
  structure: "OpenSSH host certificate",
  kind: "kbs-protocol",
  hint: "store the .pub certificate `ssh-keygen -s CA -h -I ID -n NAMES host.pub` wrote for this host key, signed by an ed25519 CA (docs/SSH-IDENTITY.md)",
};

export interface HostCertificate {
  /** The certified public key (equal to the host key's). */
  publicKey: Uint8Array;
  keyId: string;
  serial: bigint;
  principals: string[];
  /** Seconds since the epoch; validBefore 0xffffffffffffffff means forever. */
  validAfter: bigint;
  validBefore: bigint;
  /** SHA256 fingerprint of the signing CA key, as ssh-keygen -l prints it. */
  caFingerprint: string;
  /** The CA public key as users put it after @cert-authority: "ssh-ed25519 <base64>". */
  caKeyLine: string;
  /** The canonical file text sshd reads: "<type> <base64>\n" (no comment). */
  line: string;
}

/** The certificate's blob from its one-line text form ("<type> <base64> [comment]"). */
function certificateBlob(text: Uint8Array): Uint8Array {
  if (text.length > MAX_CERTIFICATE_FILE)
    throw new ParseError(SITE, "file", 0, `${text.length} bytes, over the limit of ${MAX_CERTIFICATE_FILE}`);
  const s = Buffer.from(text)
    .toString("latin1")
    .replace(/\r?\n$/, "");
  if (!/^[\x20-\x7e]*$/.test(s)) throw new ParseError(SITE, "file", 0, "must be one line of printable ASCII");
  const [type, b64] = s.split(" ");
  if (type !== ED25519_CERT)
    throw new ParseError(SITE, "type", 0, `is ${JSON.stringify(type)}, expected ${JSON.stringify(ED25519_CERT)}`);
  if (b64 === undefined || b64.length % 4 !== 0 || !/^[A-Za-z0-9+/]+={0,2}$/.test(b64))
    throw new ParseError(SITE, "base64", type.length + 1, "is not padded base64");
  return new Uint8Array(Buffer.from(b64, "base64"));
}

/** Parse a host certificate and check that it certifies `hostKey` (the 32-byte ed25519 public key) as a host. */
export function parseHostCertificate(text: Uint8Array, hostKey: Uint8Array): HostCertificate {
  const blob = certificateBlob(text);
  const r = new SshReader(blob, SITE);
  r.expect("type", ED25519_CERT);
  r.string("nonce", 256);
  const pkAt = r.offset;
  const pk = r.string("public key", 32);
  if (pk.length !== 32) r.fail("public key", `is ${pk.length} bytes, expected 32`, pkAt);
  if (!bytesEqual(pk, hostKey)) r.fail("public key", "certifies another key, not the host key released with it", pkAt);
  const serial = r.u64("serial");
  const typeAt = r.offset;
  const certType = r.u32("cert type");
  if (certType !== SSH_CERT_TYPE_HOST)
    r.fail("cert type", `is ${certType}${certType === 1 ? " (a user certificate)" : ""}, expected 2 (host)`, typeAt);
  const keyId = r.text("key id", 1024);
  const principals = parsePrincipals(r.string("valid principals", 64 * 1024), r);
  const validAfter = r.u64("valid after");
  const windowAt = r.offset;
  const validBefore = r.u64("valid before");
  if (validAfter >= validBefore)
    r.fail("valid before", `the window [${validAfter}, ${validBefore}) is empty`, windowAt);
  const critAt = r.offset;
  if (r.string("critical options", 64 * 1024).length !== 0)
    r.fail("critical options", "a host certificate has none (OpenSSH defines none); refusing unknown ones", critAt);
  r.string("extensions", 64 * 1024);
  r.string("reserved", 1024);
  const caBlob = r.string("signature key", 1024);
  const signed = blob.subarray(0, r.offset);
  const sigAt = r.offset;
  const sigBlob = r.string("signature", 1024);
  r.end("end");
  const caKey = caPublicKey(caBlob, r, sigAt);
  const sig = new SshReader(sigBlob, { ...SITE, structure: `${SITE.structure} signature` });
  sig.expect("algorithm", ED25519);
  const sigBytes = sig.string("signature", 64);
  if (sigBytes.length !== 64) sig.fail("signature", `is ${sigBytes.length} bytes, expected 64`);
  sig.end("end");
  if (!ed25519.verify(sigBytes, signed, caKey))
    r.fail("signature", "does not verify with the certificate's CA key (corrupt or forged certificate)", sigAt);
  return {
    publicKey: new Uint8Array(pk),
    keyId,
    serial,
    principals,
    validAfter,
    validBefore,
    caFingerprint: sshFingerprint(caBlob),
    caKeyLine: `${ED25519} ${Buffer.from(caBlob).toString("base64")}`,
    line: `${ED25519_CERT} ${Buffer.from(blob).toString("base64")}\n`,
  };
}

function caPublicKey(caBlob: Uint8Array, r: SshReader, at: number): Uint8Array {
  const type = new SshReader(caBlob, SITE).text("signature key type");
  if (type !== ED25519)
    r.fail(
      "signature key",
      `the CA key is ${type}: the agent verifies ed25519 CA signatures only (sign host certificates with an ed25519 CA)`,
      at,
    );
  return parsePublicBlob(caBlob, "signature key", SITE);
}

function parsePrincipals(packed: Uint8Array, outer: SshReader): string[] {
  const r = new SshReader(packed, { ...SITE, structure: `${SITE.structure} valid principals` });
  const out: string[] = [];
  while (r.remaining > 0) {
    if (out.length === MAX_PRINCIPALS) outer.fail("valid principals", `more than ${MAX_PRINCIPALS} principals`);
    out.push(r.text(`principal[${out.length}]`, 255));
  }
  return out;
}

/** Whether `nowS` lies inside the certificate's window (for a warning: the guest clock is the host's). */
export function certificateCurrent(c: HostCertificate, nowS: number): boolean {
  const now = BigInt(Math.floor(nowS));
  return now >= c.validAfter && now < c.validBefore;
}
