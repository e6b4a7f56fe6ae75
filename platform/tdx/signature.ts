// Offline checks of a TDX quote's own signatures (docs/spec/tdx-abi.md §3). They prove the quote is
// internally consistent, NOT that it comes from genuine Intel hardware: that needs the PCK chain
// checked against Intel's root and PCS collateral (TCB info, QE identity), which trustee does.
import { p256 } from "@noble/curves/nist.js";
import { sha256 } from "@noble/hashes/sha2.js";
import { bytesEqual, concat, isAllZero } from "../util/bytes.ts";
import { pemCertificateBlocks } from "../util/pem.ts";
import { CERT_TYPE_PCK_CHAIN, type TdxQuote } from "./quote.ts";

const QE_REPORT_DATA_OFFSET = 0x140;

function rawToSec1(xy: Uint8Array): Uint8Array {
  return concat(Uint8Array.of(0x04), xy);
}

/** ECDSA-P256-SHA256 of the attestation key over header ‖ (descriptor) ‖ body. */
export function verifyQuoteSignature(q: TdxQuote): boolean {
  try {
    // Quotes are signed by Intel's QE, not noble: accept high-S signatures.
    return p256.verify(q.signatureData.signature, q.signedBytes, rawToSec1(q.signatureData.attestationKey), {
      lowS: false,
    });
  } catch {
    return false; // key not on the curve, malformed signature
  }
}

/** QE report REPORTDATA == SHA-256(attestation key ‖ QE auth data) ‖ 32 zeros. Undefined without QE certification data. */
export function verifyQeBinding(q: TdxQuote): boolean | undefined {
  const qe = q.signatureData.qe;
  if (!qe) return undefined;
  const rd = qe.qeReport.subarray(QE_REPORT_DATA_OFFSET, QE_REPORT_DATA_OFFSET + 64);
  const expected = sha256(concat(q.signatureData.attestationKey, qe.qeAuthData));
  return bytesEqual(rd.subarray(0, 32), expected) && isAllZero(rd.subarray(32));
}

/** PEM certificates of the PCK chain carried in the quote (leaf first), if any. */
export function pckChainPem(q: TdxQuote): string[] {
  const inner = q.signatureData.qe?.inner;
  if (!inner || inner.type !== CERT_TYPE_PCK_CHAIN) return [];
  return pemCertificateBlocks(new TextDecoder("latin1").decode(inner.data));
}
