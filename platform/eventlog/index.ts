// Public surface of the event-log codecs (TCG crypto-agile logs and CCEL). Pure, no I/O.
export {
  parseEventLog,
  isTerminator,
  type EventLog,
  type LogEvent,
  type DigestAlgorithm,
  type SpecIdEvent,
  type ParseOptions,
} from "./parse.ts";
export { replay, startupLocality, type RegisterValues, type ReplayOptions } from "./replay.ts";
export { parseCcelTable, parseCcelLog, trimCcel, CCEL_END_FLAG, CCEL_TABLE_SIZE, type CcelTable } from "./ccel.ts";
export {
  algorithmName,
  algorithmId,
  hashFunction,
  knownDigestSize,
  TPM_ALG_SHA1,
  TPM_ALG_SHA256,
  TPM_ALG_SHA384,
  TPM_ALG_SHA512,
  TPM_ALG_SM3_256,
} from "./algorithms.ts";
export { eventTypeName, EV_NO_ACTION, EV_SEPARATOR, EV_EVENT_TAG } from "./event-types.ts";
export { encodeEventLog, encodeEvent2, encodeSpecIdHeader, type EncodableEvent } from "./encode.ts";
export { describeEvent } from "./details.ts";
export { compareRegisters, type RegisterMismatch } from "./compare.ts";
