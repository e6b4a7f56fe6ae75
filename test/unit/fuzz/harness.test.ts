// The fuzz harness itself: checksum fix-ups produce what the parsers verify, runs are deterministic
// for a seed, and a planted crash / slow input is caught, saved and replayable. Without these a
// silent harness would look exactly like robust parsers.
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { describe, expect, it } from "vitest";
import { parseCcelTable } from "../../../platform/eventlog/ccel.ts";
import { parseGptHeader } from "../../../platform/luks/gpt.ts";
import { parseLuks2Header } from "../../../platform/luks/luks2-header.ts";
import { parseResponseHeader } from "../../../platform/tpm/marshal.ts";
import { ParseError } from "../../../platform/util/errors.ts";
import { planted } from "./planted-targets.ts";
import { execute, fuzzTarget } from "../../fuzz/engine.ts";
import { fixAcpiChecksum, fixGptCrcs, fixLuks2Checksum, fixTpmResponseSize } from "../../fuzz/fixups.ts";
import { mutateBytes, mutateJson } from "../../fuzz/mutate.ts";
import { findTarget, TARGETS } from "../../fuzz/targets.ts";
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

describe("engine", () => {
  it("finds, de-duplicates, saves and replays a planted crash and a slow input", async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "fuzz-test-"));
    try {
      const s = await fuzzTarget(planted, { seed: 3, executions: 3000, crashDir: dir, slowMs: 20 });
      expect(s.crashes).toBeGreaterThan(1);
      expect(s.slow).toBeGreaterThan(0);
      const crashes = s.findings.filter((f) => f.kind === "crash");
      expect(crashes).toHaveLength(1); // one distinct failure, however often it was hit
      expect(crashes[0]!.signature).toMatch(/^TypeError/);
      const saved = new Uint8Array(fs.readFileSync(crashes[0]!.file!));
      expect(saved[3]).toBe(0xff);
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

  it("CLI: a parser that never returns is stopped by the watchdog, reported and saved (bun)", () => {
    const root = path.join(import.meta.dirname, "../../..");
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "fuzz-hang-"));
    try {
      const res = spawnSync(
        path.join(root, "node_modules/.bin/bun"),
        [
          "test/fuzz/main.ts",
          "--targets-module",
          "test/unit/fuzz/planted-targets.ts",
          "--target",
          "planted-hang,planted",
          "--executions",
          "3000",
          "--hang-seconds",
          "2",
          "--crash-dir",
          dir,
        ],
        { cwd: root, encoding: "utf8", timeout: 60_000 },
      );
      expect(res.status, res.stderr).toBe(1);
      expect(res.stdout).toMatch(/hang: no return within 2 s/);
      expect(res.stdout).toMatch(/crash: TypeError/);
      const hung = fs.readdirSync(path.join(dir, "planted-hang")).filter((f) => f.endsWith(".bin"));
      expect(hung).toHaveLength(1);
      expect(fs.readFileSync(path.join(dir, "planted-hang", hung[0]!))[2]).toBe(0xff);
      // The run went on to the next target after the hang.
      expect(res.stdout).toMatch(/^planted\s+3000\s/m);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  }, 60_000);
});

describe("docs/FUZZING.md", () => {
  it("the Targets table has one row per target, and only those", () => {
    const md = fs.readFileSync(path.join(import.meta.dirname, "../../../docs/FUZZING.md"), "utf8");
    const section = md.split("\n## Targets\n")[1]!.split("\n## ")[0]!;
    const rows = [...section.matchAll(/^\| `([a-z0-9-]+)` \|/gm)].map((m) => m[1]);
    expect(rows).toEqual(TARGETS.map((t) => t.name));
  });
});
