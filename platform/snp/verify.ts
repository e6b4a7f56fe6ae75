// Checking an SNP report signature: ECDSA P-384 / SHA-384 over bytes [0, 0x2A0), R and S stored
// little-endian in 72-byte fields (only the low 48 bytes significant). Pure apart from parsing the
// VCEK/VLEK certificate with node:crypto (handles AMD's serial number 0).
import { X509Certificate } from "node:crypto";
import { p384 } from "@noble/curves/nist.js";
import { concat, fromB64url, isAllZero } from "../util/bytes.ts";
import { CvmError } from "../util/errors.ts";
import { SNP_REPORT_SIZE, SNP_SIGNED_SIZE } from "./report.ts";

/** Uncompressed P-384 point (0x04 ‖ X ‖ Y) of a VCEK/VLEK certificate (DER or PEM). */
export function vekPublicKey(cert: Uint8Array | string): Uint8Array {
  let jwk: { kty?: string; crv?: string; x?: string; y?: string };
  try {
    // Both steps parse host bytes: the certificate, then (lazily) its SubjectPublicKeyInfo.
    const x509 = new X509Certificate(typeof cert === "string" ? cert : Buffer.from(cert));
    jwk = x509.publicKey.export({ format: "jwk" }) as typeof jwk;
  } catch (e) {
    throw new CvmError("evidence", `VCEK/VLEK certificate does not parse: ${(e as Error).message}`);
  }
  if (jwk.kty !== "EC" || jwk.crv !== "P-384" || !jwk.x || !jwk.y)
    throw new CvmError("evidence", `VCEK/VLEK key is not EC P-384 (${jwk.kty}/${jwk.crv})`);
  return concat(new Uint8Array([4]), fromB64url(jwk.x), fromB64url(jwk.y));
}

/** r ‖ s (96 bytes, big-endian) from the report's LE fields; undefined if the padding is not zero. */
export function snpSignatureCompact(raw: Uint8Array): Uint8Array | undefined {
  const r = raw.subarray(0x2a0, 0x2a0 + 72);
  const s = raw.subarray(0x2e8, 0x2e8 + 72);
  if (!isAllZero(r.subarray(48)) || !isAllZero(s.subarray(48))) return undefined;
  return concat(r.slice(0, 48).reverse(), s.slice(0, 48).reverse());
}

/** Does the raw report's signature verify with this VEK public key? */
export function verifySnpReportSignature(raw: Uint8Array, publicKey: Uint8Array): boolean {
  if (raw.length !== SNP_REPORT_SIZE) return false;
  const sig = snpSignatureCompact(raw);
  if (!sig) return false;
  try {
    // Others' signatures may be high-S: lowS false (bun-runtime / noble trap).
    return p384.verify(sig, raw.subarray(0, SNP_SIGNED_SIZE), publicKey, { lowS: false });
  } catch {
    return false;
  }
}
