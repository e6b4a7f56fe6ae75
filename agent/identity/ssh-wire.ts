// The SSH wire encoding (RFC 4251 §5) the OpenSSH key and certificate formats are built from:
// uint32/uint64 big-endian and `string` = uint32 length + bytes. Every string read is bounded by
// the caller, so a hostile length can never make us allocate or scan past the input.
import type { ParseSite } from "../../platform/util/errors.ts";
import { ByteReader } from "../../platform/util/reader.ts";

/** SSH wire reads on top of the bounds-checked ByteReader (big-endian integers, bounded strings). */
export class SshReader extends ByteReader {
  constructor(buf: Uint8Array, site: ParseSite) {
    super(buf, site);
  }

  u32(field: string): number {
    return this.u32be(field);
  }
  u64(field: string): bigint {
    return this.u64be(field);
  }

  /** A `string` of at most `max` bytes (a view into the input, not a copy). */
  string(field: string, max: number): Uint8Array {
    const at = this.offset;
    const n = this.u32(`${field}.length`);
    if (n > max) this.fail(field, `length ${n} exceeds the limit of ${max}`, at);
    return this.bytes(n, field);
  }

  /** A `string` that must be printable ASCII (algorithm and cipher names, comments). */
  text(field: string, max = 64): string {
    const at = this.offset;
    const b = this.string(field, max);
    for (const c of b) if (c < 0x20 || c > 0x7e) this.fail(field, "is not printable ASCII", at);
    return String.fromCharCode(...b);
  }

  /** A name that must equal `expected`. */
  expect(field: string, expected: string): void {
    const at = this.offset;
    const got = this.text(field);
    if (got !== expected) this.fail(field, `is ${JSON.stringify(got)}, expected ${JSON.stringify(expected)}`, at);
  }
}

/**
 * Builds an SSH wire structure into one Buffer. Parts are referenced until finish(), not copied,
 * so secret parts stay in the caller's buffers (which the caller zeroes) and the result is the
 * only new copy.
 */
export class SshWriter {
  private readonly parts: Uint8Array[] = [];
  private size = 0;
  private push(b: Uint8Array): this {
    this.parts.push(b);
    this.size += b.length;
    return this;
  }
  u32(v: number): this {
    const b = new Uint8Array(4);
    new DataView(b.buffer).setUint32(0, v, false);
    return this.push(b);
  }
  u64(v: bigint): this {
    const b = new Uint8Array(8);
    new DataView(b.buffer).setBigUint64(0, v, false);
    return this.push(b);
  }
  raw(b: Uint8Array): this {
    return this.push(b);
  }
  string(b: Uint8Array | string): this {
    const bytes = typeof b === "string" ? new TextEncoder().encode(b) : b;
    return this.u32(bytes.length).push(bytes);
  }
  get length(): number {
    return this.size;
  }
  finish(): Buffer {
    const out = Buffer.alloc(this.size);
    let o = 0;
    for (const p of this.parts) {
      out.set(p, o);
      o += p.length;
    }
    return out;
  }
}
