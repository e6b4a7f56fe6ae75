// Host files read from sysfs/securityfs (the CCEL log area, the TPM event log) go through the
// bounded reader in platform/util/files.ts: absent → undefined, oversized → refused by name,
// unreadable → a platform error, never an unbounded allocation.
import * as fs from "node:fs";
import * as path from "node:path";
import { describe, expect, it } from "vitest";
import { CCEL_DATA_PATH, MAX_CCEL_AREA, readCcel } from "../../../platform/tdx/ccel-file.ts";
import { EVENT_LOG_PATH, readEventLog } from "../../../platform/tpm/eventlog-check.ts";
import { CvmError, ParseError } from "../../../platform/util/errors.ts";
import { readFileIfPresent } from "../../../platform/util/files.ts";
import { makeCcel, installCcel } from "../../helpers/tdx-fixtures.ts";
import { scratchDirs } from "../../helpers/scratch.ts";

const tmpRoot = scratchDirs("cvm-host-files-");

describe("bounded host-file reads", () => {
  it("readFileIfPresent: absent → undefined, exactly the cap is fine, one byte more is refused naming the file", () => {
    const root = tmpRoot();
    const p = path.join(root, "blob");
    expect(readFileIfPresent(p, { what: "the blob", max: 16 })).toBeUndefined();
    fs.writeFileSync(p, new Uint8Array(100_000).fill(7));
    expect(readFileIfPresent(p, { what: "the blob", max: 100_000 })!.length).toBe(100_000);
    const err = (() => {
      try {
        readFileIfPresent(p, { what: "the blob", max: 99_999 });
      } catch (e) {
        return e;
      }
    })();
    expect(err).toBeInstanceOf(CvmError);
    expect((err as CvmError).kind).toBe("evidence");
    expect((err as Error).message).toMatch(/the blob is larger than the limit of 99999 bytes/);
  });

  it("readFileIfPresent: a directory where a file should be is a platform error, not a crash", () => {
    const root = tmpRoot();
    expect(() => readFileIfPresent(root, { what: "the blob", max: 16 })).toThrow(CvmError);
  });

  it("readCcel: none published → undefined; a real-shaped area is trimmed at its terminator", () => {
    const root = tmpRoot();
    expect(readCcel(root)).toBeUndefined();
    const ccel = makeCcel();
    installCcel(root, ccel);
    const got = readCcel(root)!;
    expect(got.areaSize).toBe(ccel.area.length);
    expect(got.wire.length).toBe(ccel.logLength + 8);
    expect(Buffer.from(got.wire.subarray(ccel.logLength))).toEqual(Buffer.alloc(8, 0xff));
  });

  it("readCcel: garbage is a ParseError; an area beyond 16 MiB is refused", () => {
    const root = tmpRoot();
    const p = path.join(root, CCEL_DATA_PATH);
    fs.mkdirSync(path.dirname(p), { recursive: true });
    fs.writeFileSync(p, new Uint8Array(64).fill(0x41));
    expect(() => readCcel(root)).toThrow(ParseError);
    fs.writeFileSync(p, new Uint8Array(0));
    fs.truncateSync(p, MAX_CCEL_AREA + 1); // sparse: cheap to create, still read to the cap
    expect(() => readCcel(root)).toThrow(/CCEL log area is larger than the limit of 16777216 bytes/);
  });

  it("readEventLog: absent → undefined; present → its bytes and path", () => {
    const root = tmpRoot();
    expect(readEventLog(root)).toBeUndefined();
    const p = path.join(root, EVENT_LOG_PATH);
    fs.mkdirSync(path.dirname(p), { recursive: true });
    fs.writeFileSync(p, Uint8Array.of(1, 2, 3));
    expect(readEventLog(root)).toEqual({ path: p, bytes: Uint8Array.of(1, 2, 3) });
  });
});
