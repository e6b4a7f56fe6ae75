// A strict DER reader (ITU-T X.690 §10) for the few ASN.1 structures the agent reads itself (a CMS
// signature over a dm-verity root hash). Definite lengths only, minimal length encodings, single-byte
// tags, nesting bounded by the caller's walk; every problem is a ParseError naming the field.
import { ParseError, type ParseSite } from "./errors.ts";

export interface DerNode {
  /** The identifier octet (class, constructed bit and tag number < 31). */
  tag: number;
  /** Offset of the identifier octet in the outermost buffer. */
  start: number;
  /** The whole encoding (identifier, length, contents). */
  der: Uint8Array;
  /** The contents octets. */
  body: Uint8Array;
  /** Offset of the contents in the outermost buffer. */
  bodyStart: number;
}

export const DER_TAG = {
  INTEGER: 0x02,
  OCTET_STRING: 0x04,
  NULL: 0x05,
  OID: 0x06,
  SEQUENCE: 0x30,
  SET: 0x31,
  /** [n] constructed, context-specific. */
  context: (n: number) => 0xa0 | n,
} as const;

/** Reads consecutive DER elements from `buf` (the contents of one constructed element). */
export class DerReader {
  private pos = 0;
  constructor(
    private readonly buf: Uint8Array,
    private readonly site: ParseSite,
    /** Offset of buf[0] in the outermost buffer (for messages). */
    private readonly base = 0,
  ) {}

  get done(): boolean {
    return this.pos >= this.buf.length;
  }

  private fail(field: string, problem: string, at = this.pos): never {
    throw new ParseError(this.site, field, this.base + at, problem);
  }

  /** The next element's tag without consuming it, or undefined at the end. */
  peekTag(): number | undefined {
    return this.done ? undefined : this.buf[this.pos];
  }

  /** The next element; its tag must be `tag` when given. */
  next(field: string, tag?: number): DerNode {
    const start = this.pos;
    if (this.done) this.fail(field, "missing (end of the enclosing element)");
    const t = this.buf[this.pos]!;
    if ((t & 0x1f) === 0x1f) this.fail(field, "multi-byte tags are not used here");
    if (tag !== undefined && t !== tag)
      this.fail(field, `expected tag 0x${tag.toString(16)}, found 0x${t.toString(16)}`);
    if (this.pos + 2 > this.buf.length) this.fail(field, "truncated length");
    const first = this.buf[this.pos + 1]!;
    let len: number;
    let at = this.pos + 2;
    if (first < 0x80) len = first;
    else {
      const n = first & 0x7f;
      if (n === 0) this.fail(field, "indefinite length is not DER");
      if (n > 3) this.fail(field, `a ${n}-byte length (over 16 MiB) is not plausible here`);
      if (at + n > this.buf.length) this.fail(field, "truncated length");
      len = 0;
      for (let i = 0; i < n; i++) len = len * 256 + this.buf[at + i]!;
      if (this.buf[at] === 0 || len < 0x80) this.fail(field, "length is not minimally encoded (not DER)");
      at += n;
    }
    if (at + len > this.buf.length)
      this.fail(field, `length ${len} runs past the enclosing element (${this.buf.length - at} bytes left)`);
    this.pos = at + len;
    return {
      tag: t,
      start: this.base + start,
      der: this.buf.subarray(start, at + len),
      body: this.buf.subarray(at, at + len),
      bodyStart: this.base + at,
    };
  }

  /** The next element only if its tag is `tag`. */
  optional(field: string, tag: number): DerNode | undefined {
    return this.peekTag() === tag ? this.next(field, tag) : undefined;
  }

  /** Nothing may follow. */
  end(what: string): void {
    if (!this.done) this.fail(what, `${this.buf.length - this.pos} unexpected trailing byte(s)`);
  }
}

/** A reader over the contents of a constructed node. */
export function derChildren(node: DerNode, site: ParseSite): DerReader {
  if ((node.tag & 0x20) === 0)
    throw new ParseError(site, "element", node.start, `tag 0x${node.tag.toString(16)} is not constructed`);
  return new DerReader(node.body, site, node.bodyStart);
}

/** Dotted text of an OBJECT IDENTIFIER's contents. */
export function decodeOid(node: DerNode, site: ParseSite, field: string): string {
  const b = node.body;
  if (b.length === 0 || b.length > 64) throw new ParseError(site, field, node.start, "OID of implausible length");
  const arcs: number[] = [];
  let v = 0;
  for (let i = 0; i < b.length; i++) {
    if (v === 0 && b[i] === 0x80) throw new ParseError(site, field, node.bodyStart + i, "OID arc not minimal");
    v = v * 128 + (b[i]! & 0x7f);
    if (v > Number.MAX_SAFE_INTEGER / 128) throw new ParseError(site, field, node.bodyStart + i, "OID arc too large");
    if ((b[i]! & 0x80) === 0) {
      arcs.push(v);
      v = 0;
    } else if (i === b.length - 1) throw new ParseError(site, field, node.bodyStart + i, "OID ends inside an arc");
  }
  const first = arcs[0]!;
  const head = first < 40 ? [0, first] : first < 80 ? [1, first - 40] : [2, first - 80];
  return [...head, ...arcs.slice(1)].join(".");
}

/** The single OBJECT IDENTIFIER at the reader's position. */
export function readOid(r: DerReader, site: ParseSite, field: string): string {
  return decodeOid(r.next(field, DER_TAG.OID), site, field);
}

/** A small non-negative INTEGER (versions). */
export function readSmallInt(r: DerReader, site: ParseSite, field: string): number {
  const n = r.next(field, DER_TAG.INTEGER);
  if (n.body.length === 0 || n.body.length > 2 || (n.body[0]! & 0x80) !== 0)
    throw new ParseError(site, field, n.start, "not a small non-negative INTEGER");
  return n.body.reduce((a, x) => a * 256 + x, 0);
}
