// Reading host-provided files (sysfs, securityfs, configfs attributes, ACPI tables) with a hard
// size cap: a hostile or broken host can make them arbitrarily large, so we never hold more than
// the cap plus one read chunk. Plain readSync loops, as configfs/sysfs need (bun-runtime.md §3).
import * as fs from "node:fs";
import { CvmError } from "./errors.ts";

const CHUNK = 64 * 1024;

/** True when `p` exists (any type). */
export function pathExists(p: string): boolean {
  try {
    fs.statSync(p);
    return true;
  } catch {
    return false;
  }
}

/**
 * Read an open fd to EOF; more than `max` bytes is a CvmError("evidence") naming `what`.
 * I/O errors propagate unchanged so callers can explain their errno.
 */
export function readToEnd(fd: number, max: number, what: string): Uint8Array {
  const chunk = Buffer.alloc(Math.min(max + 1, CHUNK));
  const parts: Buffer[] = [];
  let total = 0;
  for (;;) {
    const n = fs.readSync(fd, chunk, 0, chunk.length, null);
    if (n === 0) break;
    total += n;
    if (total > max) throw new CvmError("evidence", `${what} is larger than the limit of ${max} bytes; refusing it`);
    parts.push(Buffer.from(chunk.subarray(0, n)));
  }
  return new Uint8Array(Buffer.concat(parts, total));
}

/**
 * Read a whole file of at most `max` bytes; undefined when it does not exist. Other failures are
 * CvmError("platform") naming `what` and the path.
 */
export function readFileCapped(p: string, max: number, what: string): Uint8Array | undefined {
  let fd: number;
  try {
    fd = fs.openSync(p, "r");
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === "ENOENT") return undefined;
    throw new CvmError(
      "platform",
      `cannot open ${what} (${p}): ${(e as Error).message}`,
      code === "EACCES" ? { hint: "run as root" } : {},
    );
  }
  try {
    return readToEnd(fd, max, what);
  } catch (e) {
    if (e instanceof CvmError) throw e;
    throw new CvmError("platform", `cannot read ${what} (${p}): ${(e as Error).message}`);
  } finally {
    fs.closeSync(fd);
  }
}
