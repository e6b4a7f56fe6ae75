// The PKCS#7 / CMS detached signature over a dm-verity root hash (RFC 5652 SignedData, DER), as
// `veritysetup --root-hash-signature` and the kernel's dm-verity take it: made with
// `openssl smime -sign -binary -outform der -nocerts [-noattr]` over the ASCII hex root hash.
// Pure codec: bytes → the one SignerInfo's parts; verification is signature.ts. The KBS (and the
// host, if it could reach the resource) controls these bytes: every field is checked and bounded.
import { bytesEqual } from "../../platform/util/bytes.ts";
import { DER_TAG, derChildren, DerReader, readOid, readSmallInt, type DerNode } from "../../platform/util/der.ts";
import { ParseError, type ParseSite } from "../../platform/util/errors.ts";

export const MAX_SIGNATURE_DER = 16 * 1024;

const OID = {
  signedData: "1.2.840.113549.1.7.2",
  data: "1.2.840.113549.1.7.1",
  contentType: "1.2.840.113549.1.9.3",
  messageDigest: "1.2.840.113549.1.9.4",
} as const;

export type DigestName = "sha256" | "sha384" | "sha512";
const DIGESTS: Record<string, DigestName> = {
  "2.16.840.1.101.3.4.2.1": "sha256",
  "2.16.840.1.101.3.4.2.2": "sha384",
  "2.16.840.1.101.3.4.2.3": "sha512",
};

export type KeyFamily = "rsa" | "ec";
/** Signature algorithms: the key family, and the digest the OID itself names (if it names one). */
const SIGNATURES: Record<string, { family: KeyFamily; digest?: DigestName }> = {
  "1.2.840.113549.1.1.1": { family: "rsa" }, // rsaEncryption: PKCS#1 v1.5 with digestAlgorithm
  "1.2.840.113549.1.1.11": { family: "rsa", digest: "sha256" },
  "1.2.840.113549.1.1.12": { family: "rsa", digest: "sha384" },
  "1.2.840.113549.1.1.13": { family: "rsa", digest: "sha512" },
  "1.2.840.10045.4.3.2": { family: "ec", digest: "sha256" },
  "1.2.840.10045.4.3.3": { family: "ec", digest: "sha384" },
  "1.2.840.10045.4.3.4": { family: "ec", digest: "sha512" },
};

export interface Pkcs7Signer {
  /** How the signer names its certificate. */
  sid: { issuer: Uint8Array; serial: Uint8Array } | { subjectKeyId: Uint8Array };
  digest: DigestName;
  family: KeyFamily;
  /**
   * What the signature covers: the content itself (no signed attributes), or the DER of the
   * signed attributes re-tagged as SET OF (RFC 5652 §5.4), whose messageDigest must be H(content).
   */
  signedAttrs?: { der: Uint8Array; messageDigest: Uint8Array };
  signature: Uint8Array;
}

const SITE: ParseSite = {
  structure: "root hash signature (PKCS#7)",
  kind: "volume",
  hint: "sign the ASCII hex root hash with `openssl smime -sign -binary -outform der -nocerts -noattr` (docs/VERITY.md)",
};

function fail(node: DerNode | { start: number }, field: string, problem: string): never {
  throw new ParseError(SITE, field, node.start, problem);
}

function algorithm(r: DerReader, field: string): { oid: string; node: DerNode } {
  const node = r.next(field, DER_TAG.SEQUENCE);
  const a = derChildren(node, SITE);
  const oid = readOid(a, SITE, `${field}.algorithm`);
  // parameters: absent or NULL for every algorithm accepted here
  const p = a.optional(`${field}.parameters`, DER_TAG.NULL);
  if (p && p.body.length !== 0) fail(p, `${field}.parameters`, "NULL with contents");
  a.end(field);
  return { oid, node };
}

function digestOf(r: DerReader, field: string): DigestName {
  const { oid, node } = algorithm(r, field);
  const d = DIGESTS[oid];
  if (!d) fail(node, field, `digest ${oid} is not SHA-256/384/512`);
  return d;
}

/** signedAttrs: contentType must be id-data and one messageDigest must be present. */
function signedAttributes(node: DerNode): { der: Uint8Array; messageDigest: Uint8Array } {
  const r = derChildren(node, SITE);
  let messageDigest: Uint8Array | undefined;
  let contentType: string | undefined;
  let count = 0;
  while (!r.done) {
    if (++count > 16) fail(node, "signedAttrs", "more than 16 attributes");
    const attr = derChildren(r.next("signedAttrs.attribute", DER_TAG.SEQUENCE), SITE);
    const type = readOid(attr, SITE, "signedAttrs.attribute.type");
    const valuesNode = attr.next("signedAttrs.attribute.values", DER_TAG.SET);
    attr.end("signedAttrs.attribute");
    const values = derChildren(valuesNode, SITE);
    if (type === OID.contentType || type === OID.messageDigest) {
      if ((type === OID.contentType ? contentType : messageDigest) !== undefined)
        fail(valuesNode, "signedAttrs", `attribute ${type} appears twice`);
      if (type === OID.contentType) contentType = readOid(values, SITE, "signedAttrs.contentType");
      else messageDigest = values.next("signedAttrs.messageDigest", DER_TAG.OCTET_STRING).body;
      values.end(`signedAttrs ${type}`);
    }
  }
  if (contentType !== OID.data) fail(node, "signedAttrs.contentType", "missing or not id-data");
  if (!messageDigest) fail(node, "signedAttrs.messageDigest", "missing");
  // The signature covers the attributes with the SET OF tag, not the [0] IMPLICIT one (RFC 5652 §5.4).
  const der = new Uint8Array(node.der);
  der[0] = DER_TAG.SET;
  return { der, messageDigest };
}

function signerInfo(node: DerNode): Pkcs7Signer {
  const r = derChildren(node, SITE);
  const version = readSmallInt(r, SITE, "signerInfo.version");
  let sid: Pkcs7Signer["sid"];
  if (version === 1) {
    const ias = derChildren(r.next("signerInfo.sid", DER_TAG.SEQUENCE), SITE);
    const issuer = ias.next("signerInfo.sid.issuer", DER_TAG.SEQUENCE).der;
    const serial = ias.next("signerInfo.sid.serialNumber", DER_TAG.INTEGER).body;
    ias.end("signerInfo.sid");
    sid = { issuer, serial };
  } else if (version === 3) {
    sid = { subjectKeyId: r.next("signerInfo.sid", 0x80).body };
  } else fail(node, "signerInfo.version", `version ${version} is neither 1 nor 3`);
  const digest = digestOf(r, "signerInfo.digestAlgorithm");
  const attrs = r.optional("signerInfo.signedAttrs", DER_TAG.context(0));
  const { oid, node: algNode } = algorithm(r, "signerInfo.signatureAlgorithm");
  const alg = SIGNATURES[oid];
  if (!alg) fail(algNode, "signerInfo.signatureAlgorithm", `${oid} is not RSA PKCS#1 v1.5 or ECDSA with SHA-2`);
  if (alg.digest !== undefined && alg.digest !== digest)
    fail(algNode, "signerInfo.signatureAlgorithm", `names ${alg.digest} but digestAlgorithm is ${digest}`);
  const signature = r.next("signerInfo.signature", DER_TAG.OCTET_STRING).body;
  if (signature.length === 0 || signature.length > 1024)
    fail(node, "signerInfo.signature", `${signature.length} bytes is not a plausible signature`);
  r.optional("signerInfo.unsignedAttrs", DER_TAG.context(1));
  r.end("signerInfo");
  return {
    sid,
    digest,
    family: alg.family,
    ...(attrs ? { signedAttrs: signedAttributes(attrs) } : {}),
    signature,
  };
}

/**
 * Parse a detached CMS SignedData with exactly one SignerInfo. Embedded certificates are skipped:
 * the signer is the configured certificate (verity.signer_cert), never one the signature brings.
 */
export function parseDetachedSignature(der: Uint8Array): Pkcs7Signer {
  if (der.length > MAX_SIGNATURE_DER)
    fail({ start: 0 }, "ContentInfo", `${der.length} bytes is over the ${MAX_SIGNATURE_DER}-byte limit`);
  const top = new DerReader(der, SITE);
  const ci = top.next("ContentInfo", DER_TAG.SEQUENCE);
  top.end("ContentInfo");
  const c = derChildren(ci, SITE);
  if (readOid(c, SITE, "ContentInfo.contentType") !== OID.signedData)
    fail(ci, "ContentInfo.contentType", "not id-signedData");
  const explicit = derChildren(c.next("ContentInfo.content", DER_TAG.context(0)), SITE);
  c.end("ContentInfo");
  const sdNode = explicit.next("SignedData", DER_TAG.SEQUENCE);
  explicit.end("ContentInfo.content");
  const sd = derChildren(sdNode, SITE);
  const version = readSmallInt(sd, SITE, "SignedData.version");
  if (version !== 1 && version !== 3) fail(sdNode, "SignedData.version", `version ${version} is neither 1 nor 3`);
  const digests = derChildren(sd.next("SignedData.digestAlgorithms", DER_TAG.SET), SITE);
  while (!digests.done) digestOf(digests, "SignedData.digestAlgorithms");
  const encapNode = sd.next("SignedData.encapContentInfo", DER_TAG.SEQUENCE);
  const encap = derChildren(encapNode, SITE);
  if (readOid(encap, SITE, "encapContentInfo.eContentType") !== OID.data)
    fail(encapNode, "encapContentInfo.eContentType", "not id-data");
  if (!encap.done) fail(encapNode, "encapContentInfo.eContent", "present: the signature must be detached");
  sd.optional("SignedData.certificates", DER_TAG.context(0));
  sd.optional("SignedData.crls", DER_TAG.context(1));
  const infosNode = sd.next("SignedData.signerInfos", DER_TAG.SET);
  sd.end("SignedData");
  const infos = derChildren(infosNode, SITE);
  const signer = signerInfo(infos.next("SignedData.signerInfos", DER_TAG.SEQUENCE));
  if (!infos.done) fail(infosNode, "SignedData.signerInfos", "more than one SignerInfo");
  return signer;
}

/** The issuer Name (DER) and serialNumber (INTEGER contents) of an X.509 certificate, for sid matching. */
export function certificateIssuerSerial(certDer: Uint8Array): { issuer: Uint8Array; serial: Uint8Array } {
  const site: ParseSite = { structure: "verity.signer_cert", kind: "config" };
  const top = new DerReader(certDer, site);
  const tbs = derChildren(derChildren(top.next("Certificate", DER_TAG.SEQUENCE), site).next("tbs", 0x30), site);
  tbs.optional("tbsCertificate.version", DER_TAG.context(0));
  const serial = tbs.next("tbsCertificate.serialNumber", DER_TAG.INTEGER).body;
  tbs.next("tbsCertificate.signature", DER_TAG.SEQUENCE);
  const issuer = tbs.next("tbsCertificate.issuer", DER_TAG.SEQUENCE).der;
  return { issuer, serial };
}

/** Does the signer name this certificate (issuer + serial)? A subject key identifier is not matched here. */
export function sidNames(sid: Pkcs7Signer["sid"], cert: { issuer: Uint8Array; serial: Uint8Array }): boolean {
  return "issuer" in sid ? bytesEqual(sid.issuer, cert.issuer) && bytesEqual(sid.serial, cert.serial) : true;
}
