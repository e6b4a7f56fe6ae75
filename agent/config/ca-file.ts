// A PEM CA bundle named by configuration or the command line (kbs.ca_file,
// unlock.luks_token.allowed_ca_files, bind --ca): a bounded regular file that holds a certificate.
import { CvmError, type ErrorKind } from "../../platform/util/errors.ts";
import { fileText, readFileBounded } from "../../platform/util/files.ts";

export const MAX_CA_BYTES = 256 * 1024;
export const PEM_CERT = "-----BEGIN CERTIFICATE-----";

/** The bundle's text; `what` names where the path came from, `kind` is the error kind of every failure. */
export function readCaFile(p: string, what: string, kind: ErrorKind = "config", hint?: string): string {
  const pem = fileText(
    readFileBounded(p, { what, max: MAX_CA_BYTES, kind, regularFile: true, ...(hint ? { hint } : {}) }),
  );
  if (!pem.includes(PEM_CERT))
    throw new CvmError(kind, `${what} (${p}) holds no PEM certificate`, hint ? { hint } : {});
  return pem;
}
