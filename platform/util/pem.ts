// PEM and the one piece of DER this agent reads itself (the size of a top-level SEQUENCE).
// Certificates come from hosts and services (NV indices, the Azure metadata service, TDX quotes):
// the strict decoder bounds everything; parsing X.509 itself is node:crypto's job.
import { ParseError } from "./errors.ts";

const CERTIFICATE_BLOCK = /-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----/g;
const ANY_BLOCK = /-----BEGIN ([A-Z0-9 ]+)-----\r?\n([\s\S]*?)-----END \1-----/g;
const MAX_CERTS = 8;

/**
 * Total size (header + content) of the definite-length SEQUENCE at the start of `b`, or undefined
 * when `b` does not start with one (lengths over 3 bytes are refused: no certificate is 16 MiB).
 * The content may extend past `b`; callers decide whether that is truncation.
 */
export function derSequenceSize(b: Uint8Array): number | undefined {
  if (b.length < 2 || b[0] !== 0x30) return undefined;
  const first = b[1]!;
  if (first < 0x80) return 2 + first;
  const n = first & 0x7f;
  if (n < 1 || n > 3 || b.length < 2 + n) return undefined;
  let len = 0;
  for (let i = 0; i < n; i++) len = len * 256 + b[2 + i]!;
  return 2 + n + len;
}

/** The CERTIFICATE blocks of a PEM text as they stand (for node:crypto), in order. Lenient: display and tests. */
export function pemCertificateBlocks(text: string): string[] {
  return text.match(CERTIFICATE_BLOCK) ?? [];
}

/** PEM text of `der` under `label` ("PUBLIC KEY", "CERTIFICATE"), 64 columns. */
export function toPem(label: string, der: Uint8Array): string {
  const body = Buffer.from(der.buffer, der.byteOffset, der.byteLength)
    .toString("base64")
    .replace(/(.{64})(?!$)/g, "$1\n");
  return `-----BEGIN ${label}-----\n${body}\n-----END ${label}-----\n`;
}

/**
 * Strict PEM → DER for certificates from a host or service: only CERTIFICATE blocks, canonical
 * base64 bodies, each DER exactly one complete SEQUENCE, at most 8; `what` names the source in errors.
 */
export function certificatesFromPem(pem: string, what: string): Uint8Array[] {
  const out: Uint8Array[] = [];
  for (const m of pem.matchAll(ANY_BLOCK)) {
    const at = m.index;
    if (m[1] !== "CERTIFICATE") throw new ParseError(what, "PEM label", at, `expected CERTIFICATE, found ${m[1]}`);
    const body = m[2]!.replace(/\r?\n/g, "");
    if (!/^[A-Za-z0-9+/]*={0,2}$/.test(body) || body.length % 4 !== 0)
      throw new ParseError(what, "PEM body", at, "not base64");
    const der = new Uint8Array(Buffer.from(body, "base64"));
    const size = derSequenceSize(der);
    if (size === undefined) throw new ParseError(what, "certificate DER", at, "does not start with a DER SEQUENCE");
    if (size !== der.length)
      throw new ParseError(what, "certificate DER", at, `DER SEQUENCE of ${size} bytes in a ${der.length}-byte block`);
    out.push(der);
    if (out.length > MAX_CERTS) throw new ParseError(what, "PEM", at, `more than ${MAX_CERTS} certificates`);
  }
  if (!out.length) throw new ParseError(what, "PEM", 0, "no -----BEGIN CERTIFICATE----- block");
  return out;
}
