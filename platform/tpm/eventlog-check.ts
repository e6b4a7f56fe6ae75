// Replay the firmware's TCG event log and compare it with the TPM's PCRs (for `detect`): a
// mismatch means the log is incomplete/forged or something extended PCRs outside the log.
// Display only — nothing here decides trust.
import * as path from "node:path";
import { hex } from "../util/bytes.ts";
import { errorMessage } from "../util/errors.ts";
import { readFileIfPresent } from "../util/files.ts";
import { compareRegisters, parseEventLog, replay, type RegisterValues } from "../eventlog/index.ts";
import { algName } from "./constants.ts";
import type { Tpm } from "./client.ts";
import { getActiveBanks, pcrRead } from "./operations.ts";

export const EVENT_LOG_PATH = "/sys/kernel/security/tpm0/binary_bios_measurements";
/** securityfs logs are a few tens of KiB; refuse absurd sizes from a hostile host. */
const MAX_LOG_BYTES = 4 * 1024 * 1024;

export interface BankComparison {
  alg: string;
  matched: number[];
  mismatched: { pcr: number; log: string; tpm: string }[];
}

export interface EventLogComparison {
  path: string;
  events: number;
  banks: BankComparison[];
  error?: string;
}

/** The securityfs event log under `root`, or undefined when there is none. */
export function readEventLog(root = "/"): { path: string; bytes: Uint8Array } | undefined {
  const p = path.join(root, EVENT_LOG_PATH);
  const bytes = readFileIfPresent(p, { what: "the TCG event log", max: MAX_LOG_BYTES });
  return bytes && { path: p, bytes };
}

/** Replay `log` and compare every PCR it touches, in every bank that is both logged and active. */
export async function compareEventLog(tpm: Tpm, log: Uint8Array, where = "event log"): Promise<EventLogComparison> {
  let parsed;
  let replayed;
  try {
    parsed = parseEventLog(log);
    replayed = replay(parsed, { kind: "pcr" });
  } catch (e) {
    return { path: where, events: 0, banks: [], error: errorMessage(e) };
  }
  const active = await getActiveBanks(tpm);
  const banks: BankComparison[] = [];
  for (const alg of parsed.algorithms.map((a) => a.id).filter((a) => active.includes(a))) {
    const pcrs = [...replayed.entries()]
      .filter(([, m]) => m.has(alg))
      .map(([i]) => i)
      .sort((a, b) => a - b);
    if (!pcrs.length) continue;
    const values = await pcrRead(tpm, [{ hash: alg, pcrs }]);
    const actual: RegisterValues = new Map(values.map((v) => [v.pcr, new Map([[alg, v.digest]])]));
    const mismatched = compareRegisters(replayed, actual).map((m) => ({
      pcr: m.index,
      log: hex(m.replayed),
      tpm: hex(m.actual),
    }));
    const bad = new Set(mismatched.map((m) => m.pcr));
    banks.push({ alg: algName(alg), matched: values.map((v) => v.pcr).filter((p) => !bad.has(p)), mismatched });
  }
  return { path: where, events: parsed.events.length, banks };
}

export function formatEventLogComparison(c: EventLogComparison): string[] {
  if (c.error) return [`  event log ${c.path}: cannot replay: ${c.error}`];
  const lines = [`  event log ${c.path}: ${c.events} events`];
  for (const b of c.banks) {
    lines.push(
      `    ${b.alg}: ${b.mismatched.length ? `MISMATCH in PCR ${b.mismatched.map((m) => m.pcr).join(",")}` : "replay matches"} (PCRs ${b.matched.join(",") || "-"} match)`,
    );
  }
  if (!c.banks.length) lines.push("    no logged bank is active in the TPM");
  return lines;
}
