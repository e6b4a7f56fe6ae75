// Bounds-checked cursor over host-controlled bytes. Every read names the field, so a
// truncated or garbled structure produces "<structure>: field 'x' at offset N: ..."
// instead of a RangeError or, worse, a silently short slice.
import { ParseError, type ParseSite } from "./errors.ts";

export class ByteReader {
  readonly buf: Uint8Array;
  readonly structure: string;
  private readonly site: ParseSite;
  private pos: number;
  private readonly view: DataView;

  /** `structure` names the input in errors; a ParseSite also gives their kind and hint. */
  constructor(buf: Uint8Array, structure: string | ParseSite, start = 0) {
    this.buf = buf;
    this.site = typeof structure === "string" ? { structure } : structure;
    this.structure = this.site.structure;
    this.pos = start;
    this.view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  }

  get offset(): number {
    return this.pos;
  }
  get remaining(): number {
    return this.buf.length - this.pos;
  }

  fail(field: string, problem: string, at = this.pos): never {
    throw new ParseError(this.site, field, at, problem);
  }

  private need(n: number, field: string): void {
    if (n < 0 || this.pos + n > this.buf.length)
      this.fail(
        field,
        `needs ${n} byte(s), only ${Math.max(0, this.buf.length - this.pos)} left of ${this.buf.length}`,
      );
  }

  seek(off: number, field = "offset"): this {
    if (off < 0 || off > this.buf.length) this.fail(field, `offset ${off} outside ${this.buf.length}-byte buffer`);
    this.pos = off;
    return this;
  }

  skip(n: number, field = "reserved"): this {
    this.need(n, field);
    this.pos += n;
    return this;
  }

  bytes(n: number, field: string): Uint8Array {
    this.need(n, field);
    const out = this.buf.subarray(this.pos, this.pos + n);
    this.pos += n;
    return out;
  }

  u8(field: string): number {
    this.need(1, field);
    return this.buf[this.pos++]!;
  }
  u16be(field: string): number {
    this.need(2, field);
    const v = this.view.getUint16(this.pos, false);
    this.pos += 2;
    return v;
  }
  u32be(field: string): number {
    this.need(4, field);
    const v = this.view.getUint32(this.pos, false);
    this.pos += 4;
    return v;
  }
  u64be(field: string): bigint {
    this.need(8, field);
    const v = this.view.getBigUint64(this.pos, false);
    this.pos += 8;
    return v;
  }
  u16le(field: string): number {
    this.need(2, field);
    const v = this.view.getUint16(this.pos, true);
    this.pos += 2;
    return v;
  }
  u32le(field: string): number {
    this.need(4, field);
    const v = this.view.getUint32(this.pos, true);
    this.pos += 4;
    return v;
  }
  u64le(field: string): bigint {
    this.need(8, field);
    const v = this.view.getBigUint64(this.pos, true);
    this.pos += 8;
    return v;
  }

  /** TPM2B_*: u16 BE size then that many bytes, with an optional upper bound. */
  sized16be(field: string, max = 0xffff): Uint8Array {
    const at = this.pos;
    const n = this.u16be(`${field}.size`);
    if (n > max) this.fail(field, `size ${n} exceeds the limit of ${max}`, at);
    return this.bytes(n, field);
  }

  /** Require that the whole buffer was consumed. */
  end(field = "end"): void {
    if (this.pos !== this.buf.length) this.fail(field, `${this.buf.length - this.pos} unexpected trailing byte(s)`);
  }
}

/** Growable big-endian writer for TPM commands and test fixtures. */
export class ByteWriter {
  private chunks: number[] = [];
  u8(v: number): this {
    this.chunks.push(v & 0xff);
    return this;
  }
  u16be(v: number): this {
    this.chunks.push((v >>> 8) & 0xff, v & 0xff);
    return this;
  }
  u32be(v: number): this {
    this.chunks.push((v >>> 24) & 0xff, (v >>> 16) & 0xff, (v >>> 8) & 0xff, v & 0xff);
    return this;
  }
  u16le(v: number): this {
    this.chunks.push(v & 0xff, (v >>> 8) & 0xff);
    return this;
  }
  u32le(v: number): this {
    this.chunks.push(v & 0xff, (v >>> 8) & 0xff, (v >>> 16) & 0xff, (v >>> 24) & 0xff);
    return this;
  }
  u64le(v: bigint): this {
    for (let i = 0n; i < 8n; i++) this.chunks.push(Number((v >> (8n * i)) & 0xffn));
    return this;
  }
  u64be(v: bigint): this {
    for (let i = 7n; i >= 0n; i--) this.chunks.push(Number((v >> (8n * i)) & 0xffn));
    return this;
  }
  bytes(b: Uint8Array): this {
    for (const x of b) this.chunks.push(x);
    return this;
  }
  /** TPM2B: u16 BE length prefix. */
  sized16be(b: Uint8Array): this {
    return this.u16be(b.length).bytes(b);
  }
  zeros(n: number): this {
    for (let i = 0; i < n; i++) this.chunks.push(0);
    return this;
  }
  get length(): number {
    return this.chunks.length;
  }
  finish(): Uint8Array {
    return Uint8Array.from(this.chunks);
  }
}
