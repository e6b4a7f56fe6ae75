// Device-style I/O on configfs-tsm attribute files. configfs binary attributes generate the whole
// blob on the first read() and commit writes on close(), so: one open, one write, close; or one
// open, read until EOF (bounded), close. Never Bun.write/writeFileSync (docs/spec/bun-runtime.md §3).
import * as fs from "node:fs";
import { CvmError } from "../util/errors.ts";
import { readFileBounded, readFileIfPresent } from "../util/files.ts";
import { explainTsmErrno } from "./attributes.ts";

function errnoCode(e: unknown): string | undefined {
  return typeof e === "object" && e !== null && "code" in e ? String((e as { code: unknown }).code) : undefined;
}

export function tsmIoError(e: unknown, doing: string): CvmError {
  const code = errnoCode(e);
  const kind = code === "ENXIO" || code === "ENOENT" || code === "EACCES" || code === "EPERM" ? "platform" : "evidence";
  return new CvmError(kind, explainTsmErrno(code, doing), { cause: e });
}

/** Read an attribute to EOF with a hard size cap; errno failures explained for configfs-tsm. */
export function readAttribute(p: string, max: number, what: string): Uint8Array {
  return readFileBounded(p, { what, max, explain: tsmIoError });
}

/** Like readAttribute, but a missing file (attribute not offered by this provider) gives undefined. */
export function readOptionalAttribute(p: string, max: number, what: string): Uint8Array | undefined {
  return readFileIfPresent(p, { what, max, explain: tsmIoError });
}

/** One open, one write, one close (the kernel commits the value on close). */
export function writeAttribute(p: string, data: Uint8Array, what: string): void {
  let fd: number;
  try {
    fd = fs.openSync(p, "w");
  } catch (e) {
    throw tsmIoError(e, `opening ${what} for writing`);
  }
  let closed = false;
  try {
    let n: number;
    try {
      n = fs.writeSync(fd, data, 0, data.length, null);
    } catch (e) {
      throw tsmIoError(e, `writing ${what}`);
    }
    if (n !== data.length)
      throw new CvmError("evidence", `writing ${what}: short write (${n} of ${data.length} bytes)`);
    try {
      fs.closeSync(fd);
      closed = true;
    } catch (e) {
      throw tsmIoError(e, `committing ${what}`);
    }
  } finally {
    if (!closed) {
      try {
        fs.closeSync(fd);
      } catch {
        /* already failing */
      }
    }
  }
}
