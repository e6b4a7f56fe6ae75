// PEM → DER for the certificates the Azure metadata service returns. Strict: only
// "CERTIFICATE" blocks, canonical base64 bodies, and DER that is one complete SEQUENCE.
import { ParseError } from "../util/errors.ts";

const BLOCK = /-----BEGIN ([A-Z0-9 ]+)-----\r?\n([\s\S]*?)-----END \1-----/g;
const MAX_CERTS = 8;

/** All CERTIFICATE blocks of `pem` as DER, in order; `what` names the source in errors. */
export function certificatesFromPem(pem: string, what: string): Uint8Array[] {
  const out: Uint8Array[] = [];
  for (const m of pem.matchAll(BLOCK)) {
    const at = m.index;
    if (m[1] !== "CERTIFICATE") throw new ParseError(what, "PEM label", at, `expected CERTIFICATE, found ${m[1]}`);
    const body = m[2]!.replace(/\r?\n/g, "");
    if (!/^[A-Za-z0-9+/]*={0,2}$/.test(body) || body.length % 4 !== 0) throw new ParseError(what, "PEM body", at, "not base64");
    const der = new Uint8Array(Buffer.from(body, "base64"));
    checkDerSequence(der, what, at);
    out.push(der);
    if (out.length > MAX_CERTS) throw new ParseError(what, "PEM", at, `more than ${MAX_CERTS} certificates`);
  }
  if (!out.length) throw new ParseError(what, "PEM", 0, "no -----BEGIN CERTIFICATE----- block");
  return out;
}

/** The DER must be exactly one SEQUENCE whose length covers the whole buffer. */
function checkDerSequence(der: Uint8Array, what: string, at: number): void {
  const fail = (problem: string): never => {
    throw new ParseError(what, "certificate DER", at, problem);
  };
  if (der.length < 2 || der[0] !== 0x30) fail("does not start with a DER SEQUENCE");
  let len = der[1]!;
  let header = 2;
  if (len & 0x80) {
    const n = len & 0x7f;
    if (n < 1 || n > 3 || der.length < 2 + n) fail("bad DER length");
    len = 0;
    for (let i = 0; i < n; i++) len = len * 256 + der[2 + i]!;
    header += n;
  }
  if (header + len !== der.length) fail(`DER SEQUENCE of ${header + len} bytes in a ${der.length}-byte block`);
}
