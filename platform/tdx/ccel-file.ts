// Reading the CCEL log area from ACPI sysfs (docs/spec/tdx-abi.md §4) and turning it into what
// guest-components sends as `cc_eventlog`: the log trimmed at its terminator, plus 8×0xFF.
import * as path from "node:path";
import { CCEL_END_FLAG, parseCcelLog, type EventLog } from "../eventlog/index.ts";
import { concat } from "../util/bytes.ts";
import { readFileIfPresent } from "../util/files.ts";

export const CCEL_DATA_PATH = "sys/firmware/acpi/tables/data/CCEL";
/** Real log areas are 64 KiB..1 MiB (LAML); anything far bigger is not a CCEL. */
export const MAX_CCEL_AREA = 16 * 1024 * 1024;

export interface CcelEvidence {
  /** Bytes to base64 into `cc_eventlog`: trimmed log ‖ 8×0xFF. */
  wire: Uint8Array;
  log: EventLog;
  areaSize: number;
}

/** Read and trim this guest's CCEL; undefined when the firmware published none. Malformed → ParseError. */
export function readCcel(root: string): CcelEvidence | undefined {
  const area = readFileIfPresent(path.join(root, CCEL_DATA_PATH), { what: "the CCEL log area", max: MAX_CCEL_AREA });
  if (area === undefined || area.length === 0) return undefined;
  const log = parseCcelLog(area);
  return { wire: ccelWire(area.subarray(0, log.length)), log, areaSize: area.length };
}

/** guest-components' encoding: trimmed log followed by its EL_END_FLAG. */
export function ccelWire(trimmed: Uint8Array): Uint8Array {
  return concat(trimmed, CCEL_END_FLAG);
}
