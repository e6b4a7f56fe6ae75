// CBOR for the agent's own records (evidence files, measurement event records).
// Encoding is deterministic-ish preferred CBOR (definite lengths, no record extension, no tag 64 on
// byte strings) so records hash the same everywhere; decoding of anything read back from disk uses
// cbor-x's no-eval decoder (no `new Function`) with maps kept as Maps, and a size bound.
import { Encoder } from "cbor-x";
import { Decoder } from "cbor-x/decode-no-eval";
import { CvmError } from "./errors.ts";

const encoder = new Encoder({ useRecords: false, variableMapSize: true, tagUint8Array: false, mapsAsObjects: true });
const decoder = new Decoder({ useRecords: false, mapsAsObjects: false });
// For the agent's own string-keyed records: maps come back as plain objects.
const objectDecoder = new Decoder({ useRecords: false, mapsAsObjects: true });

export function encodeCbor(value: unknown): Uint8Array {
  return new Uint8Array(encoder.encode(value));
}

/** Decode untrusted CBOR: bounded size, maps come back as Map (int keys preserved). */
export function decodeCborUntrusted(bytes: Uint8Array, what: string, maxBytes = 16 * 1024 * 1024): unknown {
  if (bytes.length > maxBytes)
    throw new CvmError("evidence", `${what}: ${bytes.length} bytes exceeds the ${maxBytes}-byte limit`);
  try {
    return decoder.decode(bytes);
  } catch (e) {
    throw new CvmError("evidence", `${what}: not valid CBOR (${(e as Error).message})`);
  }
}

/** Decode an untrusted CBOR sequence (RFC 8742) of string-keyed records: bounded size, maps as objects. */
export function decodeCborSequenceUntrusted(bytes: Uint8Array, what: string, maxBytes: number): unknown[] {
  if (bytes.length > maxBytes) throw new CvmError("evidence", `${what} is larger than ${maxBytes} bytes`);
  try {
    return (objectDecoder.decodeMultiple(bytes) as unknown[] | undefined) ?? [];
  } catch (e) {
    throw new CvmError("evidence", `${what} is not a CBOR sequence (${(e as Error).message})`);
  }
}
