// Byte helpers shared by codecs and the agent. Pure, no I/O. Text decoders throw ParseError naming
// the field and the offset of the first bad character, so callers need no try/catch to say where.
import { ParseError, type ParseSite } from "./errors.ts";

const TEXT: ParseSite = { structure: "input" };

/** ParseError at the first character outside `alphabet` (or at the end when the length is wrong). */
function badText(s: string, alphabet: RegExp, field: string, site: ParseSite, problem: string): never {
  let at = 0;
  while (at < s.length && alphabet.test(s[at]!)) at++;
  throw new ParseError(site, field, at, problem);
}

export function hex(b: Uint8Array): string {
  return Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString("hex");
}

export function fromHex(s: string, field = "hex string", site = TEXT): Uint8Array {
  if (s.length % 2 !== 0 || !/^[0-9a-fA-F]*$/.test(s))
    badText(s, /[0-9a-fA-F]/, field, site, "not an even-length hex string");
  return new Uint8Array(Buffer.from(s, "hex"));
}

export function b64(b: Uint8Array): string {
  return Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString("base64");
}

/** base64url without padding (JOSE). */
export function b64url(b: Uint8Array): string {
  return Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString("base64url");
}

/** base64url with '=' padding (serde_with Base64<UrlSafe, Padded>, used by Azure evidence). */
export function b64urlPadded(b: Uint8Array): string {
  const s = b64url(b);
  return s + "=".repeat((4 - (s.length % 4)) % 4);
}

const STD_B64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;
const URL_B64_NOPAD = /^[A-Za-z0-9_-]*$/;

/** Strict standard base64 (padded), as Rust's base64 STANDARD engine accepts. */
export function fromB64(s: string, field = "base64", site = TEXT): Uint8Array {
  if (!STD_B64.test(s)) badText(s, /[A-Za-z0-9+/]/, field, site, "not canonical padded base64");
  return new Uint8Array(Buffer.from(s, "base64"));
}

/** Strict base64url without padding (JOSE). */
export function fromB64url(s: string, field = "base64url", site = TEXT): Uint8Array {
  if (!URL_B64_NOPAD.test(s) || s.length % 4 === 1) badText(s, /[A-Za-z0-9_-]/, field, site, "not unpadded base64url");
  return new Uint8Array(Buffer.from(s, "base64url"));
}

export function concat(...parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

export function bytesEqual(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  let d = 0;
  for (let i = 0; i < a.length; i++) d |= a[i]! ^ b[i]!;
  return d === 0;
}

/** Right-pad with zeros or truncate to `len` (trustee's regularize_data). */
export function fitTo(data: Uint8Array, len: number): Uint8Array {
  const out = new Uint8Array(len);
  out.set(data.subarray(0, len));
  return out;
}

export function utf8(s: string): Uint8Array {
  return new TextEncoder().encode(s);
}

export function isAllZero(b: Uint8Array): boolean {
  for (const x of b) if (x !== 0) return false;
  return true;
}
