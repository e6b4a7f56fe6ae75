// Structure-aware mutators for the fuzz harness. Everything is driven by one seeded PRNG, so a
// (seed, target, iteration) triple always yields the same input. Byte mutators know about length
// fields (interesting integer values in both byte orders, input-relative sizes); the JSON mutator
// edits the parsed tree (types, keys, bounds) so inputs get past JSON.parse into the schema checks.
import { concat } from "../../platform/util/bytes.ts";
import type { Prng } from "../helpers/prng.ts";

/** Upper bound on a mutated input, so one extend cannot grow a seed without limit. */
export const MAX_INPUT_BYTES = 1 << 20;

const INTERESTING_8 = [0x00, 0x01, 0x7f, 0x80, 0xff, 0x20, 0x22, 0x2c, 0x3d, 0x5c];
const INTERESTING_32 = [
  0, 1, 2, 0x7f, 0x80, 0xff, 0x100, 0x3ff, 0x400, 0x1000, 0x7fff, 0x8000, 0xffff, 0x10000, 0x7fffffff, 0x80000000,
  0xfffffffe, 0xffffffff,
];

/** One mutation step over bytes; `other` is a second corpus entry for splicing. */
type ByteMutator = (r: Prng, b: Uint8Array, other: Uint8Array) => Uint8Array;

function pos(r: Prng, b: Uint8Array, width = 1): number {
  return b.length >= width ? r.int(0, b.length - width) : -1;
}

const flipBits: ByteMutator = (r, b) => {
  const out = b.slice();
  for (let i = r.int(1, 8); i > 0 && out.length; i--) out[pos(r, out)]! ^= 1 << r.int(0, 7);
  return out;
};

const setBytes: ByteMutator = (r, b) => {
  const out = b.slice();
  for (let i = r.int(1, 4); i > 0 && out.length; i--)
    out[pos(r, out)] = r.bool() ? r.pick(INTERESTING_8) : r.int(0, 255);
  return out;
};

/** Overwrite a u16/u32/u64 (either byte order) with a boundary value or one derived from the input size. */
const lengthField: ByteMutator = (r, b) => {
  const width = r.pick([2, 4, 4, 8]);
  const at = pos(r, b, width);
  if (at < 0) return b;
  const out = b.slice();
  const v = new DataView(out.buffer, out.byteOffset, out.byteLength);
  const base = r.pick([...INTERESTING_32, b.length, b.length - at, b.length - at - width]);
  const value = (base + r.pick([0, 0, 0, 1, -1, 2, -2, 8, -8])) >>> 0;
  const le = r.bool();
  if (width === 2) v.setUint16(at, value & 0xffff, le);
  else if (width === 4) v.setUint32(at, value, le);
  else v.setBigUint64(at, r.bool() ? BigInt(value) : 0xffffffffffffffffn - BigInt(r.int(0, 2)), le);
  return out;
};

/** Add or subtract a small amount at one position (counters, versions, enum values). */
const arith: ByteMutator = (r, b) => {
  const out = b.slice();
  const at = pos(r, out);
  if (at >= 0) out[at] = (out[at]! + r.pick([1, -1, 2, -2, 16, -16])) & 0xff;
  return out;
};

const truncate: ByteMutator = (r, b) => b.slice(0, r.int(0, b.length));

const extend: ByteMutator = (r, b) => {
  const n = r.pick([1, 2, 4, 8, 16, 64, 512, 4096]);
  const tail = r.bool() ? r.bytes(n) : new Uint8Array(n).fill(r.pick([0, 0xff, 0x41]));
  return concat(b, tail);
};

const insertChunk: ByteMutator = (r, b) => {
  const at = r.int(0, b.length);
  return concat(b.subarray(0, at), r.bytes(r.int(1, 32)), b.subarray(at));
};

const deleteChunk: ByteMutator = (r, b) => {
  if (!b.length) return b;
  const at = r.int(0, b.length - 1);
  return concat(b.subarray(0, at), b.subarray(Math.min(b.length, at + r.int(1, 64))));
};

/** Copy a chunk of the input over another place in it (repeated structures: events, entries). */
const duplicateChunk: ByteMutator = (r, b) => {
  if (b.length < 2) return b;
  const from = r.int(0, b.length - 1);
  const chunk = b.slice(from, from + r.int(1, Math.min(256, b.length - from)));
  const at = r.int(0, b.length);
  return r.bool() ? concat(b.subarray(0, at), chunk, b.subarray(at)) : overwrite(b, at, chunk);
};

/** Head of this input, tail of another corpus entry. */
const splice: ByteMutator = (r, b, other) =>
  concat(b.subarray(0, r.int(0, b.length)), other.subarray(r.int(0, other.length)));

const randomInput: ByteMutator = (r) => r.bytes(r.int(0, 96));

const BYTE_MUTATORS: { weight: number; fn: ByteMutator }[] = [
  { weight: 6, fn: flipBits },
  { weight: 4, fn: setBytes },
  { weight: 6, fn: lengthField },
  { weight: 3, fn: arith },
  { weight: 2, fn: truncate },
  { weight: 2, fn: extend },
  { weight: 2, fn: insertChunk },
  { weight: 2, fn: deleteChunk },
  { weight: 2, fn: duplicateChunk },
  { weight: 2, fn: splice },
  { weight: 1, fn: randomInput },
];
const TOTAL_WEIGHT = BYTE_MUTATORS.reduce((s, m) => s + m.weight, 0);

function pickWeighted(r: Prng): ByteMutator {
  let x = r.int(0, TOTAL_WEIGHT - 1);
  for (const m of BYTE_MUTATORS) if ((x -= m.weight) < 0) return m.fn;
  return BYTE_MUTATORS[0]!.fn;
}

/** Inserts a token from the target's dictionary (separators, keywords, magic strings). */
function insertToken(r: Prng, b: Uint8Array, dictionary: readonly string[]): Uint8Array {
  const tok = new TextEncoder().encode(r.pick(dictionary));
  const at = r.int(0, b.length);
  return r.bool() ? concat(b.subarray(0, at), tok, b.subarray(at)) : overwrite(b, at, tok);
}

/** A stack of 1..4 byte-level mutations ("havoc"), with dictionary tokens when the target has some. */
export function mutateBytes(
  r: Prng,
  seed: Uint8Array,
  other: Uint8Array,
  dictionary: readonly string[] = [],
): Uint8Array {
  let b = seed;
  for (let i = r.int(1, 4); i > 0; i--) {
    b = dictionary.length && r.int(0, 3) === 0 ? insertToken(r, b, dictionary) : pickWeighted(r)(r, b, other);
    if (b.length > MAX_INPUT_BYTES) b = b.subarray(0, MAX_INPUT_BYTES);
  }
  return b === seed ? seed.slice() : b;
}

// ---- JSON ------------------------------------------------------------------------------------------

type Json = null | boolean | number | string | Json[] | { [k: string]: Json };

function interestingValue(r: Prng, old: Json): Json {
  switch (r.int(0, 15)) {
    case 0:
      return null;
    case 1:
      return r.bool();
    case 2:
      return r.pick([0, -1, 1, 255, 256, 65535, 2 ** 31, 2 ** 32, 2 ** 53 + 2, -(2 ** 53), 1.5, 1e308, -0]);
    case 3:
      return r.pick(["", "0", "-1", "null", "\u0000", "é", "\ud800", "__proto__", "constructor"]);
    case 4:
      return "A".repeat(r.pick([64, 1024, 70_000]));
    case 5:
      return [];
    case 6:
      return {};
    case 7:
      return [old];
    case 8:
      return { [r.pick(["type", "x", "__proto__", "0", "data", "v"])]: old };
    case 9:
      return typeof old === "number" ? String(old) : typeof old === "string" && /^-?\d+$/.test(old) ? Number(old) : old;
    case 10:
      return typeof old === "number" ? old + r.pick([1, -1, 256, -256]) : old;
    case 11:
      return typeof old === "string" ? old.slice(0, r.int(0, old.length)) : old;
    case 12:
      return typeof old === "string" ? old + r.pick(["=", "A", "\n", " ", '"', "%00", "/..", "é"]) : old;
    case 13:
      return Array.isArray(old) && old.length ? [...old, old[0]!] : old;
    case 14:
      return Array.isArray(old) ? old.slice(0, r.int(0, old.length)) : old;
    default:
      return nested(r.int(1, 40));
  }
}

function nested(depth: number): Json {
  let v: Json = 0;
  for (let i = 0; i < depth; i++) v = [v];
  return v;
}

/** Every container in the tree with the keys (or indices) under it, for uniform node selection. */
function containers(v: Json, out: (Json[] | { [k: string]: Json })[] = []): (Json[] | { [k: string]: Json })[] {
  if (v !== null && typeof v === "object") {
    out.push(v);
    for (const child of Object.values(v)) containers(child, out);
  }
  return out;
}

/** Edit one node of the tree in place: replace, delete, add an unknown member, or swap in another node. */
function mutateTree(r: Prng, root: Json): Json {
  const all = containers(root);
  if (!all.length || r.int(0, 9) === 0) return interestingValue(r, root);
  const c = r.pick(all);
  const keys = Object.keys(c);
  if (Array.isArray(c)) {
    if (!keys.length || r.int(0, 3) === 0) c.push(interestingValue(r, null));
    else {
      const i = r.int(0, c.length - 1);
      if (r.int(0, 3) === 0) c.splice(i, 1);
      else c[i] = interestingValue(r, c[i]!);
    }
    return root;
  }
  const op = r.int(0, 5);
  if (!keys.length || op === 0)
    setMember(c, r.pick(["unknown", "__proto__", "type", "0", "", "keyslots", "tee"]), interestingValue(r, null));
  else {
    const k = r.pick(keys);
    if (op === 1) delete c[k];
    else if (op === 2) {
      const donor = r.pick(all);
      const donorKeys = Object.keys(donor);
      if (donorKeys.length) setMember(c, k, structuredClone((donor as Record<string, Json>)[r.pick(donorKeys)]!));
    } else setMember(c, k, interestingValue(r, c[k]!));
  }
  return root;
}

/**
 * JSON-aware mutation: parse, edit 1..3 nodes, re-serialise; sometimes finish with byte havoc so the
 * text-level error paths (bad UTF-8, truncation) stay covered. Non-JSON seeds fall back to bytes.
 */
export function mutateJson(
  r: Prng,
  seed: Uint8Array,
  other: Uint8Array,
  dictionary: readonly string[] = [],
): Uint8Array {
  let tree: Json;
  try {
    tree = JSON.parse(new TextDecoder().decode(seed)) as Json;
  } catch {
    return mutateBytes(r, seed, other, dictionary);
  }
  for (let i = r.int(1, 3); i > 0; i--) tree = mutateTree(r, tree);
  const text = new TextEncoder().encode(JSON.stringify(tree));
  return r.int(0, 4) === 0 ? mutateBytes(r, text, other, dictionary) : text;
}

// ---- helpers -----------------------------------------------------------------------------------------

/** An own member even for "__proto__" (plain assignment would swap the prototype instead). */
function setMember(o: { [k: string]: Json }, k: string, v: Json): void {
  Object.defineProperty(o, k, { value: v, enumerable: true, writable: true, configurable: true });
}

function overwrite(b: Uint8Array, at: number, chunk: Uint8Array): Uint8Array {
  const out = b.slice();
  out.set(chunk.subarray(0, Math.max(0, out.length - at)), at);
  return out;
}
