// Replay a parsed log into register values: PCRs for a TPM log, RTMR0..3 for CCEL.
// Only digests are trusted (event data is not re-hashed): register := H(register || digest).
import { ParseError, CvmError } from "../util/errors.ts";
import { hashFunction, TPM_ALG_SHA384 } from "./algorithms.ts";
import { EV_NO_ACTION } from "./event-types.ts";
import type { EventLog, LogEvent } from "./parse.ts";

/** register index -> (TPM_ALG_ID -> value) */
export type RegisterValues = Map<number, Map<number, Uint8Array>>;

export interface ReplayOptions {
  /** "pcr": TPM PCR banks, every replayable bank, indexes 0..23 touched by the log.
   *  "rtmr": CCEL; MR index 1..4 -> RTMR0..3 (all four always present), SHA-384 only. */
  kind: "pcr" | "rtmr";
  /** EV_NO_ACTION events are not measurements (PFP spec) and are skipped. trustee's CCEL replay
   *  extends them anyway; its test double passes "extend" to behave the same. Default "skip". */
  noAction?: "skip" | "extend";
}

const STARTUP_LOCALITY = "StartupLocality\0";
const MAX_PCR = 23;
const RTMR_COUNT = 4;

/** The H-CRTM locality PCR0 starts from (PFP spec: EV_NO_ACTION "StartupLocality" event). */
export function startupLocality(log: EventLog): number | undefined {
  for (const e of log.events) {
    if (e.type !== EV_NO_ACTION || e.index !== 0 || e.data.length !== 17) continue;
    if (new TextDecoder("latin1").decode(e.data.subarray(0, 16)) === STARTUP_LOCALITY) return e.data[16];
  }
  return undefined;
}

function digestFor(log: EventLog, e: LogEvent, alg: number, name: string): Uint8Array {
  const d = e.digests.get(alg);
  if (!d)
    throw new ParseError(
      log.specId ? "TCG event log" : "TCG event log (SHA-1)",
      `events[${e.seq}].digests`,
      e.offset,
      `no ${name} digest, so the ${name} bank cannot be replayed`,
    );
  return d;
}

function extend(hash: (d: Uint8Array) => Uint8Array, current: Uint8Array, digest: Uint8Array): Uint8Array {
  const buf = new Uint8Array(current.length + digest.length);
  buf.set(current);
  buf.set(digest, current.length);
  return hash(buf);
}

export function replay(log: EventLog, opts: ReplayOptions): RegisterValues {
  const out: RegisterValues = new Map();
  if (opts.kind === "rtmr") {
    const alg = log.algorithms.find((a) => a.id === TPM_ALG_SHA384);
    if (!alg) throw new CvmError("evidence", "CCEL has no SHA-384 bank, so it cannot be replayed to RTMR values");
    const hash = hashFunction(TPM_ALG_SHA384)!;
    const regs: Uint8Array[] = Array.from({ length: RTMR_COUNT }, () => new Uint8Array(48));
    const skipNoAction = opts.noAction !== "extend";
    for (const e of log.events) {
      if ((skipNoAction && e.type === EV_NO_ACTION) || e.index === 0) continue; // index 0 = MRTD, measured by the TDX module, not extended
      if (e.index > RTMR_COUNT)
        throw new ParseError(
          "CCEL",
          `events[${e.seq}].MRIndex`,
          e.offset,
          `MR index ${e.index} (valid: 0 MRTD, 1..4 RTMR0..3)`,
        );
      regs[e.index - 1] = extend(hash, regs[e.index - 1]!, digestFor(log, e, TPM_ALG_SHA384, "sha384"));
    }
    regs.forEach((v, i) => out.set(i, new Map([[TPM_ALG_SHA384, v]])));
    return out;
  }
  const locality = startupLocality(log);
  for (const alg of log.algorithms) {
    const hash = hashFunction(alg.id);
    if (!hash) continue; // e.g. SM3: parsed, not replayable here
    const init = (i: number) => {
      const v = new Uint8Array(alg.size);
      if (i === 0 && locality !== undefined) v[alg.size - 1] = locality;
      return v;
    };
    if (locality !== undefined) (out.get(0) ?? out.set(0, new Map()).get(0)!).set(alg.id, init(0));
    for (const e of log.events) {
      if (e.type === EV_NO_ACTION) continue;
      if (e.index > MAX_PCR)
        throw new ParseError(
          "TCG event log",
          `events[${e.seq}].PCRIndex`,
          e.offset,
          `PCR index ${e.index} (valid: 0..${MAX_PCR})`,
        );
      const bank = out.get(e.index) ?? out.set(e.index, new Map()).get(e.index)!;
      bank.set(alg.id, extend(hash, bank.get(alg.id) ?? init(e.index), digestFor(log, e, alg.id, alg.name)));
    }
  }
  return out;
}
