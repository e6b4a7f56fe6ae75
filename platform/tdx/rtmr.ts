// Does a CCEL replay to a quote's RTMRs? Replayed as trustee does (every event of MR index 1..4,
// EV_NO_ACTION included) — the check the KBS will make, used for local diagnosis, `inspect` and
// the test KBS.
import { compareRegisters, type RegisterMismatch } from "../eventlog/compare.ts";
import { replay, type RegisterValues } from "../eventlog/replay.ts";
import { TPM_ALG_SHA384 } from "../eventlog/algorithms.ts";
import type { EventLog } from "../eventlog/parse.ts";
import type { TdxQuote } from "./quote.ts";

/** The RTMRs (index 0..3) whose value the log does not reproduce; empty when it replays exactly. */
export function ccelRtmrMismatches(log: EventLog, quote: TdxQuote): RegisterMismatch[] {
  const replayed = replay(log, { kind: "rtmr", noAction: "extend" });
  const actual: RegisterValues = new Map(quote.body.rtmrs.map((value, i) => [i, new Map([[TPM_ALG_SHA384, value]])]));
  return compareRegisters(replayed, actual);
}
