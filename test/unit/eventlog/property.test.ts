// Property-style: random, truncated and bit-flipped logs only ever raise ParseError/CvmError.
import * as fs from "node:fs";
import * as path from "node:path";
import { describe, expect, it } from "vitest";
import { parseCcelLog, parseCcelTable } from "../../../platform/eventlog/ccel.ts";
import { parseEventLog } from "../../../platform/eventlog/parse.ts";
import { replay } from "../../../platform/eventlog/replay.ts";
import { CvmError } from "../../../platform/util/errors.ts";
import { prng } from "../../helpers/prng.ts";

const DIR = path.join(import.meta.dirname, "../../fixtures/eventlog");
const seeds = [1, 2, 3, 0xc0ffee];

/** True when `fn` succeeded, false when it raised a typed error; anything else fails the test. */
function onlyTypedErrors(fn: () => unknown): boolean {
  try {
    fn();
    return true;
  } catch (e) {
    if (!(e instanceof CvmError)) throw new Error(`untyped error: ${(e as Error)?.stack ?? e}`);
    return false;
  }
}

function mutate(bytes: Uint8Array, r: ReturnType<typeof prng>): Uint8Array {
  const b = bytes.slice();
  switch (r.int(0, 3)) {
    case 0:
      return b.subarray(0, r.int(0, b.length));
    case 1:
      for (let i = 0; i < r.int(1, 8); i++) {
        const at = r.int(0, b.length - 1);
        b[at] = b[at]! ^ (1 << r.int(0, 7));
      }
      return b;
    case 2: {
      const at = r.int(0, Math.max(0, b.length - 4));
      new DataView(b.buffer).setUint32(at, r.pick([0, 1, 0xffffffff, 0x7fffffff, r.int(0, 2 ** 32 - 1)]), true);
      return b;
    }
    default:
      return r.bytes(r.int(0, 300));
  }
}

describe("event log codecs under hostile input", () => {
  for (const name of ["CCEL_unpadded.data.bin", "crypto_agile_eventlog", "event-uefi-sha1-log.bin", "CCEL_data_ovmf"]) {
    it(`${name}: 400 mutations`, () => {
      const bytes = new Uint8Array(fs.readFileSync(path.join(DIR, name)));
      let parsed = 0;
      for (const seed of seeds) {
        const r = prng(seed);
        for (let i = 0; i < 100; i++) {
          const m = mutate(bytes, r);
          if (onlyTypedErrors(() => replay(parseEventLog(m), { kind: "pcr" }))) parsed++;
          onlyTypedErrors(() => replay(parseCcelLog(m), { kind: "rtmr" }));
          onlyTypedErrors(() => parseCcelTable(m.subarray(0, 56)));
        }
      }
      expect(parsed).toBeGreaterThan(0); // mutations reach the replay, not just the header check
    });
  }

  it("the CCEL ACPI table (go-tdx-guest ccel_table.dat): mutations decode or raise typed errors", () => {
    const table = new Uint8Array(fs.readFileSync(path.join(DIR, "../tdx/ccel_table.dat")));
    let parsed = 0;
    for (const seed of seeds) {
      const r = prng(seed);
      for (let i = 0; i < 100; i++) if (onlyTypedErrors(() => parseCcelTable(mutate(table, r)))) parsed++;
    }
    expect(parsed).toBeGreaterThan(0);
  });

  it("every truncation of a small CCEL fails typed or parses a prefix", () => {
    const bytes = new Uint8Array(fs.readFileSync(path.join(DIR, "CCEL_unpadded.data.bin")));
    let parsed = 0;
    for (let n = 0; n < bytes.length; n++) {
      try {
        parseCcelLog(bytes.subarray(0, n));
        parsed++;
      } catch (e) {
        expect(e).toBeInstanceOf(CvmError);
      }
    }
    // Only cuts exactly at record boundaries parse (19 events + header).
    expect(parsed).toBeLessThanOrEqual(20);
  });
});
