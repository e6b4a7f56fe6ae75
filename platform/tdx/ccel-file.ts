// Reading the CCEL log area from ACPI sysfs (platform-abi.md §4.4) and turning it into what
// guest-components sends as `cc_eventlog`: the log trimmed at its terminator, plus 8×0xFF.
import * as fs from "node:fs";
import * as path from "node:path";
import { CCEL_END_FLAG, parseCcelLog, type EventLog } from "../eventlog/index.ts";
import { concat } from "../util/bytes.ts";
import { CvmError } from "../util/errors.ts";

export const CCEL_DATA_PATH = "sys/firmware/acpi/tables/data/CCEL";
export const CCEL_TABLE_PATH = "sys/firmware/acpi/tables/CCEL";
/** Real log areas are 64 KiB..1 MiB (LAML); anything far bigger is not a CCEL. */
export const MAX_CCEL_AREA = 16 * 1024 * 1024;

/** Read a file to EOF, never holding more than max+1 bytes. undefined when it does not exist. */
export function readBoundedFile(p: string, max: number, what: string): Uint8Array | undefined {
  let fd: number;
  try {
    fd = fs.openSync(p, "r");
  } catch (e) {
    const code = (e as { code?: string }).code;
    if (code === "ENOENT") return undefined;
    throw new CvmError("platform", `cannot open ${what} (${p}): ${(e as Error).message}`, code === "EACCES" ? { hint: "run as root" } : {});
  }
  try {
    const buf = Buffer.alloc(Math.min(max + 1, 1024 * 1024));
    const chunks: Buffer[] = [];
    let total = 0;
    for (;;) {
      const n = fs.readSync(fd, buf, 0, buf.length, null);
      if (n === 0) break;
      total += n;
      if (total > max) throw new CvmError("evidence", `${what} is larger than ${max} bytes; refusing it`);
      chunks.push(Buffer.from(buf.subarray(0, n)));
    }
    return new Uint8Array(Buffer.concat(chunks, total));
  } catch (e) {
    if (e instanceof CvmError) throw e;
    throw new CvmError("platform", `cannot read ${what} (${p}): ${(e as Error).message}`);
  } finally {
    fs.closeSync(fd);
  }
}

export interface CcelEvidence {
  /** Bytes to base64 into `cc_eventlog`: trimmed log ‖ 8×0xFF. */
  wire: Uint8Array;
  log: EventLog;
  areaSize: number;
}

/** Read and trim this guest's CCEL; undefined when the firmware published none. Malformed → ParseError. */
export function readCcel(root: string): CcelEvidence | undefined {
  const area = readBoundedFile(path.join(root, CCEL_DATA_PATH), MAX_CCEL_AREA, "the CCEL log area");
  if (area === undefined || area.length === 0) return undefined;
  const log = parseCcelLog(area);
  return { wire: ccelWire(area.subarray(0, log.length)), log, areaSize: area.length };
}

/** guest-components' encoding: trimmed log followed by its EL_END_FLAG. */
export function ccelWire(trimmed: Uint8Array): Uint8Array {
  return concat(trimmed, CCEL_END_FLAG);
}
