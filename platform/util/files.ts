// The one way this program reads a whole file: host files (sysfs, securityfs, configfs, efivarfs,
// ACPI tables) and user-given ones (config, CA bundle, init-data) alike. A hostile host or a wrong
// path can make a file arbitrarily large, so the reader never asks for more than limit + 1 bytes
// from the open fd: no stat-then-read gap, and pseudo-files that report st_size 0 or 4096 are read
// correctly (plain readSync loop to EOF, as configfs/sysfs need: docs/spec/bun-runtime.md §3).
import * as fs from "node:fs";
import * as path from "node:path";
import { CvmError, errorMessage, type ErrorKind } from "./errors.ts";

const CHUNK = 64 * 1024;

/** What a bounded read is for. */
export interface FileLimit {
  /** Names the file in messages ("the CCEL log area", "CA file (kbs.ca_file)"). */
  what: string;
  /** Largest accepted size in bytes. */
  max: number;
  /**
   * Error kind of every failure. Default (host files): unreadable is "platform", oversized is
   * "evidence" (hostile host input).
   */
  kind?: ErrorKind;
  hint?: string;
  /**
   * Refuse anything but a regular file (paths from config or the command line). Opened
   * O_NONBLOCK, so a FIFO cannot hang the boot before the fstat check refuses it.
   */
  regularFile?: boolean;
  /** Turns an errno failure into the caller's error (configfs-tsm explains its errno values). */
  explain?: (e: unknown, doing: string) => CvmError;
}

/** A file over its size limit: names the path and the limit. */
export class FileTooLargeError extends CvmError {
  readonly path: string;
  readonly limit: number;
  constructor(kind: ErrorKind, what: string, path: string, limit: number, hint?: string) {
    super(
      kind,
      `${what} is larger than the limit of ${limit} bytes; refusing ${path}`,
      hint !== undefined ? { hint } : {},
    );
    this.name = "FileTooLargeError";
    this.path = path;
    this.limit = limit;
  }
}

/** True when `p` exists (any type). */
export function pathExists(p: string): boolean {
  try {
    fs.statSync(p);
    return true;
  } catch {
    return false;
  }
}

function errnoOf(e: unknown): string | undefined {
  return (e as NodeJS.ErrnoException | undefined)?.code;
}

function ioError(e: unknown, doing: "opening" | "reading", p: string, o: FileLimit): CvmError {
  if (o.explain) return o.explain(e, `${doing} ${o.what}`);
  const hint = o.hint ?? (errnoOf(e) === "EACCES" ? "run as root" : undefined);
  return new CvmError(o.kind ?? "platform", `cannot read ${o.what} (${p}): ${errorMessage(e)}`, {
    cause: e,
    ...(hint !== undefined ? { hint } : {}),
  });
}

/**
 * Read an open fd to EOF, at most `o.max` bytes; `p` names it in errors. Each read asks for no
 * more than what would take the total to max + 1, the one byte that proves the file too large.
 */
export function readFdBounded(fd: number, p: string, o: FileLimit): Uint8Array {
  const chunk = Buffer.alloc(Math.min(o.max + 1, CHUNK));
  const parts: Buffer[] = [];
  let total = 0;
  for (;;) {
    let n: number;
    try {
      n = fs.readSync(fd, chunk, 0, Math.min(chunk.length, o.max + 1 - total), null);
    } catch (e) {
      throw ioError(e, "reading", p, o);
    }
    if (n === 0) break;
    total += n;
    if (total > o.max) throw new FileTooLargeError(o.kind ?? "evidence", o.what, p, o.max, o.hint);
    parts.push(Buffer.from(chunk.subarray(0, n)));
  }
  return new Uint8Array(Buffer.concat(parts, total));
}

function openBounded(p: string, o: FileLimit, optional: boolean): Uint8Array | undefined {
  let fd: number;
  try {
    fd = fs.openSync(p, o.regularFile ? fs.constants.O_RDONLY | fs.constants.O_NONBLOCK : "r");
  } catch (e) {
    if (optional && errnoOf(e) === "ENOENT") return undefined;
    throw ioError(e, "opening", p, o);
  }
  try {
    if (o.regularFile && !fs.fstatSync(fd).isFile())
      throw new CvmError(
        o.kind ?? "platform",
        `${o.what} (${p}) is not a regular file`,
        o.hint ? { hint: o.hint } : {},
      );
    return readFdBounded(fd, p, o);
  } finally {
    fs.closeSync(fd);
  }
}

/** A whole file of at most `o.max` bytes; a missing file is an error like any other. */
export function readFileBounded(p: string, o: FileLimit): Uint8Array {
  return openBounded(p, o, false)!;
}

/** A whole file of at most `o.max` bytes, or undefined when it does not exist. */
export function readFileIfPresent(p: string, o: FileLimit): Uint8Array | undefined {
  return openBounded(p, o, true);
}

/**
 * A file that may be absent or unreadable (the caller then falls back): undefined in both cases.
 * One over the limit is still refused, never truncated or silently ignored.
 */
export function readFileIfReadable(p: string, o: FileLimit): Uint8Array | undefined {
  try {
    return openBounded(p, o, true);
  } catch (e) {
    if (e instanceof FileTooLargeError) throw e;
    return undefined;
  }
}

/** UTF-8 text of a file read by readFileBounded / readFileIfPresent. */
export function fileText(b: Uint8Array): string {
  return Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString("utf8");
}

/** Replace `file` atomically (write a sibling, then rename), so a reader never sees half of it. */
export function writeFileAtomic(file: string, text: string, mode = 0o644): void {
  fs.mkdirSync(path.dirname(file), { recursive: true, mode: 0o755 });
  const tmp = `${file}.${process.pid}.tmp`;
  fs.writeFileSync(tmp, text, { mode });
  fs.renameSync(tmp, file);
}
