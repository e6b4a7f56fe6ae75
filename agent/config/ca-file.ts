// A PEM CA bundle named by configuration or the command line (kbs.ca_file,
// unlock.luks_token.allowed_ca_files, bind --ca): a bounded regular file that holds a certificate.
import { X509Certificate } from "node:crypto";
import { CvmError, errorMessage, type ErrorKind } from "../../platform/util/errors.ts";
import { fileText, readFileBounded } from "../../platform/util/files.ts";
import { pemCertificateBlocks } from "../../platform/util/pem.ts";

export const MAX_CA_BYTES = 256 * 1024;
const MAX_CA_CERTS = 64;

/**
 * Every CERTIFICATE block of a CA bundle must parse as X.509, and there must be one: node treats an
 * empty `ca` as "not given" and would silently fall back to the system roots, and a bundle that
 * is not what the owner meant (`/etc/passwd`, a key) must fail at build time (`config --check`).
 */
export function checkCaBundle(pem: string, what: string, kind: ErrorKind = "config", hint?: string): string {
  const opts = hint ? { hint } : {};
  const blocks = pemCertificateBlocks(pem);
  if (blocks.length === 0) throw new CvmError(kind, `${what} holds no PEM certificate`, opts);
  if (blocks.length > MAX_CA_CERTS)
    throw new CvmError(kind, `${what} holds more than ${MAX_CA_CERTS} certificates`, opts);
  blocks.forEach((b, i) => {
    try {
      new X509Certificate(b);
    } catch (e) {
      throw new CvmError(
        kind,
        `${what}: certificate ${i + 1} of ${blocks.length} does not parse (${errorMessage(e)})`,
        opts,
      );
    }
  });
  return pem;
}

/** The bundle's text; `what` names where the path came from, `kind` is the error kind of every failure. */
export function readCaFile(p: string, what: string, kind: ErrorKind = "config", hint?: string): string {
  const pem = fileText(
    readFileBounded(p, { what, max: MAX_CA_BYTES, kind, regularFile: true, ...(hint ? { hint } : {}) }),
  );
  return checkCaBundle(pem, `${what} (${p})`, kind, hint);
}
