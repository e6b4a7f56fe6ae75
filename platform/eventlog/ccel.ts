// CCEL: the ACPI table that locates the Confidential Computing Event Log, and the trimming
// guest-components applies before sending the log area as `cc_eventlog` (docs/spec/tdx-abi.md §4).
import { ByteReader } from "../util/reader.ts";
import { ParseError } from "../util/errors.ts";
import { isTerminator, parseEventLog, type EventLog } from "./parse.ts";

export interface CcelTable {
  signature: "CCEL";
  length: number;
  revision: number;
  checksumOk: boolean;
  oemId: string;
  oemTableId: string;
  oemRevision: number;
  creatorId: string;
  creatorRevision: number;
  ccType: number; // 0 reserved, 1 SEV, 2 TDX
  ccTypeName: string;
  ccSubtype: number;
  /** Log area minimum length and start address (guest-physical). */
  laml: bigint;
  lasa: bigint;
}

export const CCEL_TABLE_SIZE = 56;
const CC_TYPES: Record<number, string> = { 0: "reserved", 1: "SEV", 2: "TDX" };
/** Appended by guest-components after the trimmed log (EL_END_FLAG); trustee stops parsing there. */
export const CCEL_END_FLAG = new Uint8Array(8).fill(0xff);

const ascii = (b: Uint8Array) => new TextDecoder("latin1").decode(b).replace(/[\0 ]+$/, ""); // ACPI pads with spaces or NULs

export function parseCcelTable(bytes: Uint8Array): CcelTable {
  const r = new ByteReader(bytes, "CCEL ACPI table");
  const sig = ascii(r.bytes(4, "Signature"));
  if (sig !== "CCEL") r.fail("Signature", `is ${JSON.stringify(sig)}, expected "CCEL"`, 0);
  const length = r.u32le("Length");
  if (length !== CCEL_TABLE_SIZE) r.fail("Length", `is ${length}, expected ${CCEL_TABLE_SIZE}`, 4);
  if (bytes.length < length) r.fail("Length", `table says ${length} bytes, only ${bytes.length} present`, 4);
  const revision = r.u8("Revision");
  r.u8("Checksum");
  let sum = 0;
  for (let i = 0; i < length; i++) sum = (sum + bytes[i]!) & 0xff;
  const oemId = ascii(r.bytes(6, "OEMID"));
  const oemTableId = ascii(r.bytes(8, "OEMTableID"));
  const oemRevision = r.u32le("OEMRevision");
  const creatorId = ascii(r.bytes(4, "CreatorID"));
  const creatorRevision = r.u32le("CreatorRevision");
  const ccType = r.u8("CCType");
  const ccSubtype = r.u8("CCSubType");
  r.skip(2, "Reserved");
  const laml = r.u64le("LAML");
  const lasa = r.u64le("LASA");
  return {
    signature: "CCEL",
    length,
    revision,
    checksumOk: sum === 0,
    oemId,
    oemTableId,
    oemRevision,
    creatorId,
    creatorRevision,
    ccType,
    ccTypeName: CC_TYPES[ccType] ?? `unknown (${ccType})`,
    ccSubtype,
    laml,
    lasa,
  };
}

/**
 * The log area cut at its terminator, as guest-components' trim_ccel does: walk the records and
 * stop where the next 8 bytes are all 0xFF or all 0x00. Unlike trim_ccel, a log that fills the
 * whole area without a terminator is accepted (nothing to trim). Throws ParseError if malformed.
 */
export function trimCcel(area: Uint8Array): Uint8Array {
  const log = parseCcelLog(area);
  return area.subarray(0, log.length);
}

/** Parse a CCEL log area (padding allowed) as a crypto-agile log. */
export function parseCcelLog(area: Uint8Array): EventLog {
  const log = parseEventLog(area, { structure: "CCEL" });
  if (log.format !== "crypto-agile")
    throw new ParseError(
      "CCEL",
      "SpecIdEvent",
      0,
      "the first record is not a 'Spec ID Event03' header (CCEL is always crypto-agile)",
    );
  return log;
}

export { isTerminator };
