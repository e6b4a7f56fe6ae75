// Random, truncated and bit-flipped quotes only ever raise ParseError/CvmError.
import * as fs from "node:fs";
import * as path from "node:path";
import { describe, expect, it } from "vitest";
import { parseTdxQuote } from "../../../platform/tdx/quote.ts";
import { verifyQeBinding, verifyQuoteSignature } from "../../../platform/tdx/signature.ts";
import { trusteeQuoteClaims } from "../../../platform/tdx/claims.ts";
import { CvmError } from "../../../platform/util/errors.ts";
import { prng } from "../../helpers/prng.ts";

const DIR = path.join(import.meta.dirname, "../../fixtures/tdx");

describe("TDX quote parser under hostile input", () => {
  for (const name of ["tdx_quote_4.dat", "tdx_quote_5.dat", "tdx_prod_quote_SPR_E4.dat"]) {
    it(`${name}: 300 mutations`, () => {
      const bytes = new Uint8Array(fs.readFileSync(path.join(DIR, name)));
      let parsed = 0;
      for (const seed of [7, 8, 9]) {
        const r = prng(seed);
        for (let i = 0; i < 100; i++) {
          let m: Uint8Array = bytes.slice();
          const k = r.int(0, 3);
          if (k === 0) m = m.subarray(0, r.int(0, m.length));
          else if (k === 1)
            for (let j = 0; j < r.int(1, 6); j++) {
              const at = r.int(0, m.length - 1);
              m[at] = m[at]! ^ (1 << r.int(0, 7));
            }
          else if (k === 2)
            new DataView(m.buffer).setUint32(
              r.pick([0x278, 0x27c + 0x82, 0x32, r.int(0, m.length - 4)]),
              r.pick([0, 0xffffffff, r.int(0, 70000)]),
              true,
            );
          else m = r.bytes(r.int(0, 700));
          try {
            const q = parseTdxQuote(m);
            verifyQuoteSignature(q);
            verifyQeBinding(q);
            trusteeQuoteClaims(q);
            parsed++;
          } catch (e) {
            if (!(e instanceof CvmError)) throw new Error(`seed ${seed} #${i}: untyped ${(e as Error).stack}`);
          }
        }
      }
      expect(parsed).toBeGreaterThan(0);
    });
  }
});
