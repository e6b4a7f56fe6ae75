// The owner's signature over a root hash, checked in user space before the hash is used: the KBS
// released the hash, and verity.signer_cert (in the measured initramfs) says who must have signed
// it. The signed message is the ASCII hex root hash, lowercase, no newline: what veritysetup passes
// the kernel and what `--root-hash-signature` signs. node:crypto verifies; pkcs7.ts parses.
import { createHash, verify, X509Certificate } from "node:crypto";
import { bytesEqual } from "../../platform/util/bytes.ts";
import { CvmError, errorMessage } from "../../platform/util/errors.ts";
import { certificatesFromPem } from "../../platform/util/pem.ts";
import { certificateIssuerSerial, parseDetachedSignature, sidNames, type Pkcs7Signer } from "./pkcs7.ts";

const HINT =
  "the KBS released a root hash not signed by verity.signer_cert: sign it with `cvm-unlock verity format --sign-key` (docs/VERITY.md)";

/** The configured signer certificate(s) (PEM, at most 8: a rotation may list the old and the new). */
export function signerCertificates(pem: string, what: string): X509Certificate[] {
  try {
    return certificatesFromPem(pem, what).map((der) => new X509Certificate(Buffer.from(der)));
  } catch (e) {
    throw new CvmError("config", `${what} is not a PEM certificate bundle: ${errorMessage(e)}`, {
      hint: "verity.signer_cert names the certificate(s) of the key that signs the root hashes",
    });
  }
}

function keyFamily(cert: X509Certificate): string | undefined {
  return cert.publicKey.asymmetricKeyType;
}

function verifiesWith(signer: Pkcs7Signer, message: Uint8Array, cert: X509Certificate): boolean {
  const family = keyFamily(cert);
  if ((signer.family === "rsa" && family !== "rsa") || (signer.family === "ec" && family !== "ec")) return false;
  if (!sidNames(signer.sid, certificateIssuerSerial(new Uint8Array(cert.raw)))) return false;
  let signed = message;
  if (signer.signedAttrs) {
    const digest = createHash(signer.digest).update(message).digest();
    if (!bytesEqual(digest, signer.signedAttrs.messageDigest)) return false;
    signed = signer.signedAttrs.der;
  }
  try {
    return verify(signer.digest, signed, cert.publicKey, signer.signature);
  } catch {
    return false; // a malformed signature value (e.g. ECDSA DER) is a failed verification
  }
}

/**
 * Refuse (exit 15) unless `signatureDer` is a detached PKCS#7 signature over `rootHashHex` by one of
 * `signers`. Parse errors name the field; a valid signature by anyone else is refused the same way.
 */
export function checkRootHashSignature(
  volume: string,
  rootHashHex: string,
  signatureDer: Uint8Array | undefined,
  signers: X509Certificate[],
): void {
  if (signatureDer === undefined)
    throw new CvmError(
      "volume",
      `verity volume ${volume}: verity.signer_cert is configured but the KBS resource carries no signature_p7s_b64: refusing`,
      { hint: HINT },
    );
  const signer = parseDetachedSignature(signatureDer);
  const message = new TextEncoder().encode(rootHashHex.toLowerCase());
  if (!signers.some((c) => verifiesWith(signer, message, c)))
    throw new CvmError(
      "volume",
      `verity volume ${volume}: the root hash signature does not verify with verity.signer_cert (${signers.length} certificate(s)): refusing`,
      { hint: HINT },
    );
}
