// Crypto-agile event log encoder: the inverse of parseEventLog for the crypto-agile format.
// Used by test fixtures (a CCEL for a stand-in guest) and round-trip tests on real logs.
import { ByteWriter } from "../util/reader.ts";
import { concat } from "../util/bytes.ts";
import { EV_NO_ACTION } from "./event-types.ts";
import type { DigestAlgorithm, LogEvent, SpecIdEvent } from "./parse.ts";

const SIGNATURE = new TextEncoder().encode("Spec ID Event03\0");

export function encodeSpecIdHeader(spec: Omit<SpecIdEvent, "specVersion"> & { specVersion?: string }): Uint8Array {
  const [major, minor] = (spec.specVersion ?? "2.0").split(".").map(Number);
  const data = new ByteWriter()
    .bytes(SIGNATURE)
    .u32le(spec.platformClass)
    .u8(minor ?? 0)
    .u8(major ?? 2)
    .u8(spec.specErrata)
    .u8(spec.uintnSize)
    .u32le(spec.algorithms.length);
  for (const a of spec.algorithms) data.u16le(a.id).u16le(a.size);
  data.u8(spec.vendorInfo.length).bytes(spec.vendorInfo);
  const body = data.finish();
  return concat(new ByteWriter().u32le(0).u32le(EV_NO_ACTION).zeros(20).u32le(body.length).finish(), body);
}

export type EncodableEvent = Pick<LogEvent, "index" | "type" | "digests" | "data">;

/** One TCG_PCR_EVENT2; digests are written in the order of `algorithms` unless the event's map says otherwise. */
export function encodeEvent2(e: EncodableEvent, algorithms: DigestAlgorithm[]): Uint8Array {
  const w = new ByteWriter().u32le(e.index).u32le(e.type).u32le(e.digests.size);
  for (const [alg, d] of e.digests) {
    const a = algorithms.find((x) => x.id === alg);
    if (!a || a.size !== d.length)
      throw new RangeError(`event log encode: digest for alg 0x${alg.toString(16)} does not match the Spec ID table`);
    w.u16le(alg).bytes(d);
  }
  return w.u32le(e.data.length).bytes(e.data).finish();
}

export function encodeEventLog(
  spec: Omit<SpecIdEvent, "specVersion"> & { specVersion?: string },
  events: EncodableEvent[],
): Uint8Array {
  return concat(encodeSpecIdHeader(spec), ...events.map((e) => encodeEvent2(e, spec.algorithms)));
}
