// The one bounded reader (platform/util/files.ts): never more than limit + 1 bytes from the fd, so a
// file whose size the kernel misreports (sysfs 4096, procfs 0) or an endless device is handled
// without a stat-then-read gap; oversize is a typed error naming the path and the limit.
import { spawn, spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { describe, expect, it } from "vitest";
import { CvmError } from "../../../platform/util/errors.ts";
import {
  FileTooLargeError,
  fileText,
  readFileBounded,
  readFileIfPresent,
  readFileIfReadable,
} from "../../../platform/util/files.ts";
import { thrownBy } from "../../helpers/thrown.ts";
import { scratchDirs } from "../../helpers/scratch.ts";

const tmp = scratchDirs("cvm-files-");
const errorOf = (f: () => unknown) => thrownBy(f, CvmError);

describe("bounded file reads", () => {
  it("exactly the limit is read; one byte more is a FileTooLargeError naming path and limit", () => {
    const p = path.join(tmp(), "blob");
    fs.writeFileSync(p, new Uint8Array(70_000).fill(9));
    expect(readFileBounded(p, { what: "the blob", max: 70_000 }).length).toBe(70_000);
    const e = errorOf(() => readFileBounded(p, { what: "the blob", max: 69_999 }));
    expect(e).toBeInstanceOf(FileTooLargeError);
    expect((e as FileTooLargeError).path).toBe(p);
    expect((e as FileTooLargeError).limit).toBe(69_999);
    expect(e.kind).toBe("evidence");
    expect(e.message).toBe(`the blob is larger than the limit of 69999 bytes; refusing ${p}`);
    expect(errorOf(() => readFileBounded(p, { what: "config file", max: 10, kind: "config" })).kind).toBe("config");
  });

  it("an endless device is refused after limit + 1 bytes instead of filling memory", () => {
    const e = errorOf(() => readFileBounded("/dev/zero", { what: "the zero device", max: 1000 }));
    expect(e).toBeInstanceOf(FileTooLargeError);
    expect((e as FileTooLargeError).limit).toBe(1000);
  });

  it("procfs files report st_size 0 and are still read whole", () => {
    expect(fs.statSync("/proc/version").size).toBe(0);
    const want = fs.readFileSync("/proc/version");
    expect(want.length).toBeGreaterThan(0);
    expect(Buffer.from(readFileBounded("/proc/version", { what: "kernel version", max: 4096 }))).toEqual(want);
    expect(() => readFileBounded("/proc/version", { what: "kernel version", max: want.length - 1 })).toThrow(
      FileTooLargeError,
    );
  });

  it("sysfs files report st_size 4096 whatever they hold: the limit applies to the content", () => {
    const p = "/sys/devices/system/cpu/online";
    expect(fs.statSync(p).size).toBe(4096);
    const text = fileText(readFileBounded(p, { what: "online CPUs", max: 64 }));
    expect(text).toBe(fs.readFileSync(p, "utf8"));
    expect(text).toMatch(/^[0-9,-]+\n$/);
  });

  it("reads a FIFO of unknown size to EOF, bounded", async () => {
    const fifo = path.join(tmp(), "fifo");
    expect(spawnSync("mkfifo", [fifo]).status).toBe(0);
    // One writer, two writes apart in time (two short reads), then EOF when it exits.
    const writer = spawn("sh", ["-c", `{ printf abc; sleep 0.2; printf def; } > "$1"`, "sh", fifo]);
    const exited = new Promise((resolve) => writer.on("exit", resolve));
    expect(fileText(readFileBounded(fifo, { what: "piped input", max: 6 }))).toBe("abcdef");
    expect(await exited).toBe(0);
  });

  it("absent: an error for readFileBounded, undefined for readFileIfPresent / readFileIfReadable", () => {
    const p = path.join(tmp(), "missing");
    const e = errorOf(() => readFileBounded(p, { what: "CA file", max: 10, kind: "config" }));
    expect(e.kind).toBe("config");
    expect(e.message).toMatch(/^cannot read CA file \(.*missing\): ENOENT/);
    expect(readFileIfPresent(p, { what: "x", max: 10 })).toBeUndefined();
    expect(readFileIfReadable(p, { what: "x", max: 10 })).toBeUndefined();
  });

  it("unreadable: readFileIfReadable falls back to undefined, but oversize is still refused", () => {
    const d = tmp();
    expect(readFileIfReadable(d, { what: "a directory", max: 10 })).toBeUndefined();
    expect(errorOf(() => readFileIfPresent(d, { what: "a directory", max: 10 })).kind).toBe("platform");
    const big = path.join(d, "big");
    fs.writeFileSync(big, "0123456789A");
    expect(() => readFileIfReadable(big, { what: "sysfs attribute", max: 10 })).toThrow(FileTooLargeError);
  });

  it("regularFile refuses devices, directories and FIFOs without blocking on them", () => {
    const d = tmp();
    const fifo = path.join(d, "fifo");
    expect(spawnSync("mkfifo", [fifo]).status).toBe(0);
    for (const p of ["/dev/zero", d, fifo]) {
      const e = errorOf(() => readFileBounded(p, { what: "config file", max: 10, kind: "config", regularFile: true }));
      expect(e.kind).toBe("config");
      expect(e.message).toBe(`config file (${p}) is not a regular file`);
    }
  });

  it("explain turns errno failures into the caller's error", () => {
    const p = path.join(tmp(), "attr");
    const e = errorOf(() =>
      readFileBounded(p, {
        what: "outblob",
        max: 10,
        explain: (err, doing) => new CvmError("platform", `${doing}: ${(err as NodeJS.ErrnoException).code}`),
      }),
    );
    expect(e.message).toBe("opening outblob: ENOENT");
  });
});
