import { describe, expect, it } from "vitest";
import { canonicalize, JcsError } from "../../../agent/kbs/jcs.ts";
import { prng } from "../../helpers/prng.ts";

const fromBits = (hex: string) => {
  const v = new DataView(new ArrayBuffer(8));
  v.setBigUint64(0, BigInt(`0x${hex}`));
  return v.getFloat64(0);
};

describe("JCS (RFC 8785)", () => {
  it("serializes numbers as in RFC 8785 Appendix B", () => {
    const cases: [string, string][] = [
      ["0000000000000000", "0"],
      ["8000000000000000", "0"],
      ["0000000000000001", "5e-324"],
      ["8000000000000001", "-5e-324"],
      ["7fefffffffffffff", "1.7976931348623157e+308"],
      ["ffefffffffffffff", "-1.7976931348623157e+308"],
      ["4340000000000000", "9007199254740992"],
      ["c340000000000000", "-9007199254740992"],
      ["4430000000000000", "295147905179352830000"],
      ["44b52d02c7e14af5", "9.999999999999997e+22"],
      ["44b52d02c7e14af6", "1e+23"],
      ["44b52d02c7e14af7", "1.0000000000000001e+23"],
      ["444b1ae4d6e2ef4e", "999999999999999700000"],
      ["444b1ae4d6e2ef4f", "999999999999999900000"],
      ["444b1ae4d6e2ef50", "1e+21"],
      ["3eb0c6f7a0b5ed8c", "9.999999999999997e-7"],
      ["3eb0c6f7a0b5ed8d", "0.000001"],
      ["41b3de4355555553", "333333333.3333332"],
      ["41b3de4355555554", "333333333.33333325"],
      ["41b3de4355555555", "333333333.3333333"],
      ["41b3de4355555556", "333333333.3333334"],
      ["41b3de4355555557", "333333333.33333343"],
      ["becbf647612f3696", "-0.0000033333333333333333"],
      ["43143ff3c1cb0959", "1424953923781206.2"],
    ];
    for (const [bits, text] of cases) expect(canonicalize(fromBits(bits)), bits).toBe(text);
  });

  it("rejects NaN and infinities (RFC 8785 B: 7fffffffffffffff, 7ff0000000000000)", () => {
    expect(() => canonicalize(fromBits("7fffffffffffffff"))).toThrow(JcsError);
    expect(() => canonicalize({ a: [fromBits("7ff0000000000000")] })).toThrow(/\$\.a\[0\].*not a finite number/);
    expect(() => canonicalize(-Infinity)).toThrow(JcsError);
  });

  it("reproduces the RFC 8785 §3.2.2 example", () => {
    const input = JSON.parse(
      '{"numbers":[333333333.33333329,1E30,4.50,2e-3,0.000000000000000000000000001],' +
        '"string":"\\u20ac$\\u000F\\u000aA\'\\u0042\\u0022\\u005c\\\\\\"\\/","literals":[null,true,false]}',
    );
    expect(canonicalize(input)).toBe(
      '{"literals":[null,true,false],"numbers":[333333333.3333333,1e+30,4.5,0.002,1e-27],"string":"€$\\u000f\\nA\'B\\"\\\\\\\\\\"/"}',
    );
  });

  it("sorts keys by UTF-16 code units, not code points (RFC 8785 §3.2.3)", () => {
    const input = {
      "\u20ac": "Euro Sign",
      "\r": "Carriage Return",
      "\ufb33": "Hebrew Letter Dalet With Dagesh",
      "1": "One",
      "\ud83d\ude00": "Emoji: Grinning Face",
      "\u0080": "Control",
      "\u00f6": "Latin Small Letter O With Diaeresis",
    };
    expect(canonicalize(input)).toBe(
      '{"\\r":"Carriage Return","1":"One","\u0080":"Control","\u00f6":"Latin Small Letter O With Diaeresis",' +
        '"\u20ac":"Euro Sign","\ud83d\ude00":"Emoji: Grinning Face","\ufb33":"Hebrew Letter Dalet With Dagesh"}',
    );
  });

  it("reproduces trustee's parse_runtimedata_json_binding canonical form", () => {
    expect(canonicalize({ b: 1, a: "test", c: { d: "e" } })).toBe('{"a":"test","b":1,"c":{"d":"e"}}');
  });

  it("escapes lone surrogates like JSON.stringify and keeps other text verbatim", () => {
    expect(canonicalize("\ud800")).toBe('"\\ud800"');
    expect(canonicalize("é\u2028\u007f")).toBe('"é\u2028\u007f"');
    expect(canonicalize("\u0000\b\t")).toBe('"\\u0000\\b\\t"');
  });

  it("rejects values JSON cannot carry, naming where they are", () => {
    expect(() => canonicalize({ x: undefined })).toThrow(/\$\.x: undefined/);
    expect(() => canonicalize({ n: 1n })).toThrow(/bigint/);
    expect(() => canonicalize([new Date(0)])).toThrow(/\$\[0\].*Date/);
    expect(() => canonicalize(new Map())).toThrow(/Map/);
    expect(() => canonicalize(new Uint8Array(2))).toThrow(/Uint8Array/);
    expect(() => canonicalize(() => 1)).toThrow(/function/);
    let deep: unknown = 1;
    for (let i = 0; i < 100; i++) deep = [deep];
    expect(() => canonicalize(deep)).toThrow(/deeper than 64/);
    expect(canonicalize(Object.create(null))).toBe("{}");
  });

  it("property: output parses back to the input, is idempotent and sorted at every level", () => {
    const seed = 0x8785;
    const r = prng(seed);
    const randString = () =>
      String.fromCharCode(
        ...Array.from({ length: r.int(0, 6) }, () => r.pick([r.int(0x20, 0x7e), r.int(0, 0x1f), r.int(0x80, 0xffff)])),
      );
    const gen = (depth: number): unknown => {
      const k = r.int(0, depth > 3 ? 3 : 5);
      if (k === 0) return r.pick([null, true, false]);
      if (k === 1) return r.pick([r.int(-1e6, 1e6), (r.next() - 0.5) * 10 ** r.int(-30, 30), 0]);
      if (k === 2 || k === 3) return randString();
      if (k === 4) return Array.from({ length: r.int(0, 4) }, () => gen(depth + 1));
      // "k" prefix: no array-index-like keys, so JSON.parse keeps the text order of members.
      return Object.fromEntries(Array.from({ length: r.int(0, 5) }, () => [`k${randString()}`, gen(depth + 1)]));
    };
    const sortedEverywhere = (v: unknown): boolean => {
      if (Array.isArray(v)) return v.every(sortedEverywhere);
      if (v && typeof v === "object") {
        const keys = Object.keys(v);
        return keys.every((k, i) => i === 0 || keys[i - 1]! < k) && Object.values(v).every(sortedEverywhere);
      }
      return true;
    };
    for (let i = 0; i < 500; i++) {
      const value = gen(0);
      const text = canonicalize(value);
      expect(JSON.parse(text), `seed ${seed} case ${i}`).toEqual(JSON.parse(JSON.stringify(value)));
      expect(canonicalize(JSON.parse(text))).toBe(text);
      expect(text).not.toMatch(/^\s|\s$/);
      expect(sortedEverywhere(JSON.parse(text)), `seed ${seed} case ${i}`).toBe(true);
    }
  });
});
