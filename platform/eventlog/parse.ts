// TCG PC Client crypto-agile event log parser (PFP spec §10; docs/spec/eventlog.md §2–§4), also used for
// CCEL, which is the same format with "PCRIndex" meaning the CC measurement-register index.
// Pure: bytes in, structure out. The log comes from firmware/host memory, so every count and
// size is bounded and every failure names the field and offset.
import { ByteReader } from "../util/reader.ts";
import { ParseError } from "../util/errors.ts";
import { algorithmName, knownDigestSize, TPM_ALG_SHA1 } from "./algorithms.ts";
import { EV_NO_ACTION, eventTypeName } from "./event-types.ts";

export interface DigestAlgorithm {
  id: number;
  name: string;
  size: number;
}

export interface SpecIdEvent {
  platformClass: number;
  specVersion: string; // "2.0"
  specErrata: number;
  uintnSize: number;
  algorithms: DigestAlgorithm[];
  vendorInfo: Uint8Array;
}

export interface LogEvent {
  /** Position in `events` (0 = first event after the Spec ID header). */
  seq: number;
  /** Byte offset of the record in the log. */
  offset: number;
  /** PCR index (TPM logs) or CC measurement-register index (CCEL: 0 MRTD, 1..4 RTMR0..3). */
  index: number;
  type: number;
  typeName: string;
  /** Digest per TPM_ALG_ID, in log order. */
  digests: Map<number, Uint8Array>;
  data: Uint8Array;
}

export interface EventLog {
  /** "crypto-agile" (Spec ID Event03 header) or the legacy SHA-1-only format. */
  format: "crypto-agile" | "sha1";
  specId?: SpecIdEvent;
  /** Banks every event carries a digest for. */
  algorithms: DigestAlgorithm[];
  events: LogEvent[];
  /** Bytes of the log proper; what follows is padding or a terminator. */
  length: number;
  /** How the log ended: end of input, or a 0xFF/0x00 terminator (CCEL padding). */
  end: "eof" | "terminator";
}

export interface ParseOptions {
  /** Structure name used in errors ("TCG event log", "CCEL"). */
  structure?: string;
  maxEvents?: number;
  maxEventDataSize?: number;
}

const SPEC_ID_SIGNATURE = "Spec ID Event03\0";
const MAX_ALGORITHMS = 16;
const DEFAULTS = { maxEvents: 100_000, maxEventDataSize: 16 * 1024 * 1024 };

/**
 * True when the next 8 bytes are all 0xFF or all 0x00: the end of a CCEL log area (trustee and
 * guest-components stop on exactly this). An all-zero record would be PCR0/EV_PREBOOT_CERT with
 * zero digests, which no firmware produces.
 */
export function isTerminator(buf: Uint8Array, at: number): boolean {
  if (at + 8 > buf.length) return false;
  const first = buf[at]!;
  if (first !== 0x00 && first !== 0xff) return false;
  for (let i = 1; i < 8; i++) if (buf[at + i] !== first) return false;
  return true;
}

function parseSpecId(log: Uint8Array, structure: string, dataOffset: number, dataSize: number): SpecIdEvent {
  // A reader over the log that ends where the event data ends: offsets in errors stay absolute.
  const s = new ByteReader(log.subarray(0, dataOffset + dataSize), structure, dataOffset);
  const fail = (field: string, problem: string, at: number): never => {
    throw new ParseError(structure, `SpecIdEvent.${field}`, at, problem);
  };
  s.skip(16, "SpecIdEvent.signature");
  const platformClass = s.u32le("SpecIdEvent.platformClass");
  const minor = s.u8("SpecIdEvent.specVersionMinor");
  const major = s.u8("SpecIdEvent.specVersionMajor");
  const specErrata = s.u8("SpecIdEvent.specErrata");
  const uintnSize = s.u8("SpecIdEvent.uintnSize");
  const countAt = s.offset;
  const n = s.u32le("SpecIdEvent.numberOfAlgorithms");
  if (n === 0 || n > MAX_ALGORITHMS)
    fail("numberOfAlgorithms", `${n} algorithms (expected 1..${MAX_ALGORITHMS})`, countAt);
  const algorithms: DigestAlgorithm[] = [];
  for (let i = 0; i < n; i++) {
    const at = s.offset;
    const id = s.u16le(`SpecIdEvent.digestSizes[${i}].algorithmId`);
    const size = s.u16le(`SpecIdEvent.digestSizes[${i}].digestSize`);
    const known = knownDigestSize(id);
    if (known !== undefined && known !== size)
      fail(`digestSizes[${i}]`, `${algorithmName(id)} declared with ${size}-byte digests (must be ${known})`, at);
    if (size === 0 || size > 128) fail(`digestSizes[${i}]`, `digest size ${size} out of range`, at);
    if (algorithms.some((a) => a.id === id))
      fail(`digestSizes[${i}]`, `algorithm ${algorithmName(id)} listed twice`, at);
    algorithms.push({ id, name: algorithmName(id), size });
  }
  const vendorInfoSize = s.u8("SpecIdEvent.vendorInfoSize");
  const vendorInfo = s.bytes(vendorInfoSize, "SpecIdEvent.vendorInfo");
  return { platformClass, specVersion: `${major}.${minor}`, specErrata, uintnSize, algorithms, vendorInfo };
}

function isSpecIdHeader(buf: Uint8Array): boolean {
  if (buf.length < 32 + 16) return false;
  const v = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  if (v.getUint32(4, true) !== EV_NO_ACTION) return false;
  const sig = new TextDecoder("latin1").decode(buf.subarray(32, 48));
  return sig === SPEC_ID_SIGNATURE;
}

/** One TCG_PCClientPCREvent (SHA-1 format, used by the header and by legacy logs). */
function readSha1Record(
  r: ByteReader,
  maxData: number,
): { offset: number; index: number; type: number; digest: Uint8Array; data: Uint8Array } {
  const offset = r.offset;
  const index = r.u32le("PCRIndex");
  const type = r.u32le("EventType");
  const digest = r.bytes(20, "Digest");
  const sizeAt = r.offset;
  const size = r.u32le("EventSize");
  if (size > maxData) r.fail("EventSize", `${size} bytes exceeds the limit of ${maxData}`, sizeAt);
  const data = r.bytes(size, "Event");
  return { offset, index, type, digest, data };
}

/** Parse a whole log. Throws ParseError on anything malformed. */
export function parseEventLog(bytes: Uint8Array, opts: ParseOptions = {}): EventLog {
  const structure = opts.structure ?? "TCG event log";
  const maxEvents = opts.maxEvents ?? DEFAULTS.maxEvents;
  const maxData = opts.maxEventDataSize ?? DEFAULTS.maxEventDataSize;
  const r = new ByteReader(bytes, structure);
  if (bytes.length < 32) r.fail("header", `log of ${bytes.length} bytes is shorter than one event header (32)`, 0);
  const events: LogEvent[] = [];
  const push = (e: Omit<LogEvent, "seq" | "typeName">) => {
    if (events.length >= maxEvents) r.fail("events", `more than ${maxEvents} events`, e.offset);
    events.push({ seq: events.length, typeName: eventTypeName(e.type), ...e });
  };
  let end: EventLog["end"] = "eof";

  if (!isSpecIdHeader(bytes)) {
    // Legacy SHA-1 log: every record has the 32-byte header shape.
    while (r.remaining > 0) {
      if (isTerminator(bytes, r.offset)) {
        end = "terminator";
        break;
      }
      const rec = readSha1Record(r, maxData);
      push({
        offset: rec.offset,
        index: rec.index,
        type: rec.type,
        digests: new Map([[TPM_ALG_SHA1, rec.digest]]),
        data: rec.data,
      });
    }
    return {
      format: "sha1",
      algorithms: [{ id: TPM_ALG_SHA1, name: "sha1", size: 20 }],
      events,
      length: r.offset,
      end,
    };
  }

  const header = readSha1Record(r, maxData);
  const specId = parseSpecId(bytes, structure, header.offset + 32, header.data.length);
  const sizes = new Map(specId.algorithms.map((a) => [a.id, a.size]));
  while (r.remaining > 0) {
    if (isTerminator(bytes, r.offset)) {
      end = "terminator";
      break;
    }
    const offset = r.offset;
    const index = r.u32le("PCRIndex");
    const type = r.u32le("EventType");
    const countAt = r.offset;
    const count = r.u32le("Digests.count");
    if (count === 0 || count > specId.algorithms.length)
      r.fail(
        "Digests.count",
        `${count} digests in event ${events.length} (the Spec ID event declares ${specId.algorithms.length} algorithm(s))`,
        countAt,
      );
    const digests = new Map<number, Uint8Array>();
    for (let i = 0; i < count; i++) {
      const algAt = r.offset;
      const alg = r.u16le(`Digests[${i}].hashAlg`);
      const size = sizes.get(alg);
      if (size === undefined)
        return r.fail(`Digests[${i}].hashAlg`, `algorithm ${algorithmName(alg)} is not in the Spec ID event`, algAt);
      if (digests.has(alg)) r.fail(`Digests[${i}].hashAlg`, `second ${algorithmName(alg)} digest in one event`, algAt);
      digests.set(alg, r.bytes(size, `Digests[${i}].digest`));
    }
    const sizeAt = r.offset;
    const dataSize = r.u32le("EventSize");
    if (dataSize > maxData) r.fail("EventSize", `${dataSize} bytes exceeds the limit of ${maxData}`, sizeAt);
    const data = r.bytes(dataSize, "Event");
    push({ offset, index, type, digests, data });
  }
  return { format: "crypto-agile", specId, algorithms: specId.algorithms, events, length: r.offset, end };
}
