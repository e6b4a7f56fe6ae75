// Tiny seeded PRNG for property-style tests (no fast-check dependency). mulberry32: 32-bit
// state, good enough to spread test inputs; the seed is printed by callers so a failure replays.
export interface Prng {
  /** Uniform float in [0, 1). */
  next(): number;
  /** Integer in [min, max] (inclusive). */
  int(min: number, max: number): number;
  bytes(n: number): Uint8Array;
  pick<T>(items: readonly T[]): T;
  bool(): boolean;
}

export function prng(seed: number): Prng {
  let s = seed >>> 0;
  const next = () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const int = (min: number, max: number) => min + Math.floor(next() * (max - min + 1));
  return {
    next,
    int,
    bytes: (n) => Uint8Array.from({ length: n }, () => int(0, 255)),
    pick: (items) => items[int(0, items.length - 1)]!,
    bool: () => next() < 0.5,
  };
}
