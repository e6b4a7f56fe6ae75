// The fuzz harness itself: checksum fix-ups produce what the parsers verify, runs are deterministic
// for a seed, and a planted crash / slow input is caught, saved and replayable. Without these a
// silent harness would look exactly like robust parsers.
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { describe, expect, it } from "vitest";
import { parseCcelTable } from "../../../platform/eventlog/ccel.ts";
import { parseGptHeader } from "../../../platform/luks/gpt.ts";
import { parseLuks2Header } from "../../../platform/luks/luks2-header.ts";
import { parseResponseHeader } from "../../../platform/tpm/marshal.ts";
import { ParseError } from "../../../platform/util/errors.ts";
import { execute, fuzzTarget } from "../../fuzz/engine.ts";
import { fixAcpiChecksum, fixGptCrcs, fixLuks2Checksum, fixTpmResponseSize } from "../../fuzz/fixups.ts";
import { mutateBytes, mutateJson } from "../../fuzz/mutate.ts";
import { findTarget, REFUSED, type FuzzTarget } from "../../fuzz/targets.ts";
import { prng } from "../../helpers/prng.ts";

const fixture = (rel: string) => new Uint8Array(fs.readFileSync(path.join(import.meta.dirname, "../../fixtures", rel)));

describe("checksum fix-ups", () => {
  it("LUKS2: a label edit is refused by its checksum, and parses once resealed", () => {
    const hdr = fixture("unlock/luks2-header.bin").slice(0, 16384);
    hdr.set(new TextEncoder().encode("fuzzed\0"), 24);
    expect(() => parseLuks2Header(hdr)).toThrow(/csum/);
    expect(parseLuks2Header(fixLuks2Checksum(hdr)).label).toBe("fuzzed");
  });

  it("GPT: an edited disk GUID is refused by header_crc32, and parses once both CRCs are fixed", () => {
    const image = fixture("unlock/gpt-root.bin");
    image[512 + 56]! ^= 0xff;
    expect(() => parseGptHeader(image.subarray(512, 1024))).toThrow(/header_crc32/);
    expect(parseGptHeader(fixGptCrcs(image).subarray(512, 1024)).entryCount).toBeGreaterThan(0);
  });

  it("TPM: responseSize follows a truncation", () => {
    const rsp = Uint8Array.from([0x80, 0x01, 0, 0, 0, 99, 0, 0, 0, 0, 1, 2]);
    expect(() => parseResponseHeader(rsp)).toThrow(ParseError);
    expect(parseResponseHeader(fixTpmResponseSize(rsp)).size).toBe(12);
  });

  it("ACPI: the CCEL table checksum sums to zero after an edit", () => {
    const table = fixture("tdx/ccel_table.dat");
    table[20]! ^= 0x55;
    expect(parseCcelTable(table).checksumOk).toBe(false);
    expect(parseCcelTable(fixAcpiChecksum(table)).checksumOk).toBe(true);
  });
});

describe("mutators", () => {
  it("are deterministic for a seed and change the input", () => {
    const seed = new TextEncoder().encode('{"nonce":"abc","extra-params":{"a":[1,2]}}');
    const run = (s: number) =>
      Array.from({ length: 50 }, (_, i) => (i % 2 ? mutateJson : mutateBytes)(prng(s + i), seed, seed));
    expect(run(7)).toEqual(run(7));
    expect(run(7)).not.toEqual(run(8));
    expect(run(7).filter((b) => Buffer.compare(Buffer.from(b), Buffer.from(seed)) !== 0).length).toBeGreaterThan(40);
  });

  it("JSON mutation keeps most outputs parseable JSON (so schema checks are reached)", () => {
    const seed = fixture("fuzz/key-document.json");
    const outs = Array.from({ length: 200 }, (_, i) => mutateJson(prng(i), seed, seed));
    const parseable = outs.filter((b) => {
      try {
        JSON.parse(new TextDecoder().decode(b));
        return true;
      } catch {
        return false;
      }
    });
    expect(parseable.length).toBeGreaterThan(120);
  });
});

/** A parser with a planted bug: TypeError when byte 3 is 0x42; slow when byte 0 is 0xee. */
const planted: FuzzTarget = {
  name: "planted",
  about: "test target",
  seeds: async () => [Uint8Array.from([1, 2, 3, 4, 5, 6, 7, 8])],
  run: (b) => {
    if (b.length < 4) throw new ParseError("planted", "length", 0, "short");
    if (b[0] === 0xee) {
      const until = performance.now() + 30;
      while (performance.now() < until);
    }
    if (b[3] === 0x42) (undefined as unknown as { x: number }).x;
    return b[1] === 0 ? REFUSED : b;
  },
};

describe("engine", () => {
  it("finds, de-duplicates, saves and replays a planted crash and a slow input", async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "fuzz-test-"));
    try {
      const s = await fuzzTarget(planted, { seed: 3, executions: 20_000, crashDir: dir, slowMs: 20 });
      expect(s.crashes).toBeGreaterThan(1);
      expect(s.slow).toBeGreaterThan(0);
      const crashes = s.findings.filter((f) => f.kind === "crash");
      expect(crashes).toHaveLength(1); // one distinct failure, however often it was hit
      expect(crashes[0]!.signature).toMatch(/^TypeError/);
      const saved = new Uint8Array(fs.readFileSync(crashes[0]!.file!));
      expect(saved[3]).toBe(0x42);
      expect(fs.readFileSync(crashes[0]!.file!.replace(/\.bin$/, ".txt"), "utf8")).toMatch(
        /reproduce: npm run fuzz -- --target planted --replay .*\.bin/,
      );
      expect((await execute(planted, saved)).kind).toBe("crash");
      expect(s.refused).toBeGreaterThan(0);
      expect(s.accepted + s.refused + s.crashes).toBe(s.executions);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it("replays the same input sequence for the same seed", async () => {
    const t = findTarget("kbs-cookie");
    const a = await fuzzTarget(t, { seed: 11, executions: 1500 });
    const b = await fuzzTarget(t, { seed: 11, executions: 1500 });
    const c = await fuzzTarget(t, { seed: 12, executions: 1500 });
    const counts = (s: typeof a) => [s.executions, s.accepted, s.refused, s.corpus];
    expect(counts(a)).toEqual(counts(b));
    expect(counts(a)).not.toEqual(counts(c));
  });
});
