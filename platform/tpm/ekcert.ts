// EK certificates from the TCG EK Credential Profile NV indices, summarised for people
// (`detect`, `evidence --decode`). Certificates are host/vendor data: parsed, never trusted here.
import { X509Certificate, createHash } from "node:crypto";
import { hex } from "../util/bytes.ts";
import { derSequenceSize } from "../util/pem.ts";
import { errorMessage } from "../util/errors.ts";
import { hex32 } from "./constants.ts";
import type { Tpm } from "./client.ts";
import { nvRead, nvReadPublicIfPresent } from "./operations.ts";

export const EK_CERT_INDICES: { index: number; label: string }[] = [
  { index: 0x01c00002, label: "RSA 2048 EK" },
  { index: 0x01c0000a, label: "ECC P-256 EK" },
  { index: 0x01c00012, label: "RSA 2048 EK (high range)" },
  { index: 0x01c00014, label: "ECC P-256 EK (high range)" },
  { index: 0x01c00016, label: "ECC P-384 EK (high range)" },
];

export interface EkCertSummary {
  index: number;
  label: string;
  size: number;
  subject?: string;
  issuer?: string;
  serialNumber?: string;
  notBefore?: string;
  notAfter?: string;
  keyType?: string;
  sha256?: string;
  /** Set when the NV content is not a certificate node:crypto can parse. */
  error?: string;
  der: Uint8Array;
}

/**
 * Trim NV padding: a DER SEQUENCE's own length says where the certificate ends (vendors pad EK
 * cert indices with zeros or 0xFF). Returns the input when the header is not a definite length.
 */
export function derExtent(b: Uint8Array): Uint8Array {
  const size = derSequenceSize(b);
  return size === undefined ? b : b.subarray(0, Math.min(b.length, size));
}

export function summariseCertificate(index: number, label: string, raw: Uint8Array): EkCertSummary {
  const der = derExtent(raw);
  const base: EkCertSummary = {
    index,
    label,
    size: der.length,
    der,
    sha256: hex(createHash("sha256").update(der).digest()),
  };
  try {
    const c = new X509Certificate(Buffer.from(der));
    return {
      ...base,
      subject: c.subject.replace(/\n/g, ", "),
      issuer: c.issuer.replace(/\n/g, ", "),
      serialNumber: c.serialNumber,
      notBefore: c.validFrom,
      notAfter: c.validTo,
      keyType: c.publicKey.asymmetricKeyType ?? "unknown",
    };
  } catch (e) {
    return { ...base, error: `not a parseable X.509 certificate: ${errorMessage(e)}` };
  }
}

/** Every EK certificate present in the well-known indices (absent indices are skipped). */
export async function readEkCertificates(tpm: Tpm): Promise<EkCertSummary[]> {
  const out: EkCertSummary[] = [];
  for (const { index, label } of EK_CERT_INDICES) {
    const pub = await nvReadPublicIfPresent(tpm, index);
    if (!pub) continue;
    try {
      out.push(summariseCertificate(index, label, await nvRead(tpm, index)));
    } catch (e) {
      out.push({
        index,
        label,
        size: pub.dataSize,
        der: new Uint8Array(0),
        error: `cannot read ${hex32(index)}: ${errorMessage(e)}`,
      });
    }
  }
  return out;
}
