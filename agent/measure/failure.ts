// The failure path of the initrd boot (docs/UNLOCK.md "Failure path"): before the failure policy
// (poweroff, or emergency on lab images) runs, the failure marker "cvm-unlock:failed:<exit code>"
// is extended into the PCR/RTMR, so that nothing later in this boot attests as a fresh initramfs.
//   1. the agent itself, on the error path of `unlock` / `verify-root` (it knows the exit code
//      and the reason), writes failed.json next to the event record;
//   2. `measure failure`, from cvm-unlock-failure.service that the failure targets pull in (the
//      backstop: the agent may have been killed, or the failure was not ours), extends the marker
//      unless the agent already did, and prints ONE console line with the exit code and reason.
import * as fs from "node:fs";
import * as path from "node:path";
import { Deadline } from "../../platform/util/deadline.ts";
import { errorMessage } from "../../platform/util/errors.ts";
import { fileText, readFileIfPresent } from "../../platform/util/files.ts";
import { silentLogger, type Logger } from "../../platform/util/log.ts";
import type { ParsedArgs } from "../cli/args.ts";
import { loadConfig } from "../cli/common.ts";
import { configSchema, type Config } from "../config/schema.ts";
import { failureEvent } from "./events.ts";
import { measureEvent } from "./measure.ts";

/** How long the marker may take: the run's own deadline may be what just expired. */
const MARKER_DEADLINE_MS = 30_000;
const MAX_REPORT_BYTES = 16 * 1024;
const MAX_REASON = 300;

/** measured: extended into every configured register; none: no register present; failed: an extend failed. */
export type MarkerState = "measured" | "none" | "failed";

/** failed.json: what the agent reports to the backstop unit. No secrets: error messages never hold one. */
export interface FailureReport {
  v: 1;
  command: string;
  exit_code: number;
  kind: string;
  reason: string;
  marker: MarkerState;
  /** Where the marker went ("PCR 15 + RTMR 3"), or why it did not. */
  marker_detail: string;
}

export function failureReportPath(config: Config): string {
  return path.join(path.dirname(config.unlock.measure.record_path), "failed.json");
}

/** One console line: no control characters (host-supplied text in error messages), bounded. */
export function consoleSafe(text: string, max = MAX_REASON): string {
  const flat = text.replace(/[\u0000-\u001f\u007f-\u009f]+/g, " ").trim();
  return flat.length > max ? `${flat.slice(0, max - 3)}...` : flat;
}

/** The measurement settings must survive a broken config (exit 3 is a failure too): fall back to the defaults. */
function failureConfig(args: ParsedArgs, log: Logger): Config {
  try {
    return loadConfig(args, silentLogger).config;
  } catch (e) {
    log.warning(`failure marker: configuration unusable (${errorMessage(e)}); using the built-in measure settings`);
    return configSchema.parse({}, "");
  }
}

function platformRoot(args: ParsedArgs): string {
  return path.resolve((args.options.get("platform-root") as string | undefined) ?? "/");
}

/** Extend the failure marker; never throws (the failure being reported is what matters). */
async function extendMarker(
  config: Config,
  root: string,
  log: Logger,
  exitCode: number | undefined,
  kind: string,
): Promise<{ marker: MarkerState; detail: string }> {
  const deadline = new Deadline(MARKER_DEADLINE_MS);
  try {
    const rec = await measureEvent(
      config.unlock.measure,
      { root, tpmSpec: config.platform.tpm, deadline, log },
      "failure",
      failureEvent(exitCode),
      kind,
    );
    const where = [rec.pcr ? `PCR ${rec.pcr.index}` : "", rec.rtmr ? `RTMR ${rec.rtmr.index}` : ""].filter(Boolean);
    return where.length
      ? { marker: "measured", detail: where.join(" + ") }
      : { marker: "none", detail: "no TPM or RTMR present" };
  } catch (e) {
    log.error(`failure marker NOT measured: ${errorMessage(e)}`);
    return { marker: "failed", detail: consoleSafe(errorMessage(e), 120) };
  } finally {
    deadline.dispose();
  }
}

/**
 * The agent's own failure path (main.ts, for commands that run in the initrd boot): only inside
 * the initrd, so a failed run on a workstation neither extends its PCR nor leaves a report.
 */
export async function recordFailure(
  args: ParsedArgs,
  log: Logger,
  failure: { command: string; exitCode: number; kind: string; reason: string },
): Promise<void> {
  const root = platformRoot(args);
  if (!fs.existsSync(path.join(root, "etc/initrd-release"))) return;
  const config = failureConfig(args, log);
  const { marker, detail } = await extendMarker(config, root, log, failure.exitCode, failure.kind);
  const report: FailureReport = {
    v: 1,
    command: failure.command,
    exit_code: failure.exitCode,
    kind: failure.kind,
    reason: consoleSafe(failure.reason),
    marker,
    marker_detail: detail,
  };
  const p = failureReportPath(config);
  try {
    fs.mkdirSync(path.dirname(p), { recursive: true, mode: 0o755 });
    fs.writeFileSync(p, JSON.stringify(report) + "\n", { mode: 0o644 });
  } catch (e) {
    log.error(`cannot write the failure report ${p}: ${errorMessage(e)}`);
  }
}

/** failed.json as the backstop reads it: bounded and shape-checked; anything else counts as absent. */
export function readFailureReport(p: string, log: Logger): FailureReport | undefined {
  let r: Partial<FailureReport>;
  try {
    const bytes = readFileIfPresent(p, { what: "failure report", max: MAX_REPORT_BYTES, regularFile: true });
    if (bytes === undefined) return undefined;
    r = JSON.parse(fileText(bytes)) as Partial<FailureReport>;
  } catch (e) {
    log.warning(`ignoring the failure report ${p}: ${errorMessage(e)}`);
    return undefined;
  }
  const ok =
    typeof r === "object" &&
    r !== null &&
    r.v === 1 &&
    typeof r.command === "string" &&
    Number.isInteger(r.exit_code) &&
    (r.exit_code as number) >= 1 &&
    (r.exit_code as number) <= 255 &&
    typeof r.kind === "string" &&
    typeof r.reason === "string" &&
    ["measured", "none", "failed"].includes(r.marker as string) &&
    typeof r.marker_detail === "string";
  if (!ok) {
    log.warning(`ignoring the failure report ${p}: not a version 1 report`);
    return undefined;
  }
  return r as FailureReport;
}

export const FAILURE_ACTIONS = ["poweroff", "emergency"] as const;
export type FailureAction = (typeof FAILURE_ACTIONS)[number];

/** The one line an owner reads in the serial log. */
export function failureLine(
  report: Pick<FailureReport, "command" | "exit_code" | "kind" | "reason"> | undefined,
  marker: { marker: MarkerState; detail: string },
  action: FailureAction | undefined,
): string {
  const what = report
    ? `${consoleSafe(report.command, 20)} failed with exit ${report.exit_code} (${consoleSafe(report.kind, 20)}): ${consoleSafe(report.reason)}`
    : "initrd failure without a report from the agent (exit code unknown)";
  const m =
    marker.marker === "measured"
      ? `failure marker measured into ${marker.detail}`
      : marker.marker === "none"
        ? `failure marker not measured: ${marker.detail}`
        : `failure marker NOT measured: ${marker.detail}`;
  const next = action === "poweroff" ? "; powering off" : action === "emergency" ? "; entering emergency mode" : "";
  return `cvm-unlock: ${what}; ${m}${next}`;
}

/**
 * `measure failure`: extend the marker unless the agent's report says it already did (extending
 * twice would be harmless, but the record would show two failures), then return the console line.
 */
export async function backstopFailure(
  args: ParsedArgs,
  log: Logger,
  action: FailureAction | undefined,
): Promise<{ line: string; marker: MarkerState }> {
  const config = failureConfig(args, log);
  const report = readFailureReport(failureReportPath(config), log);
  const marker =
    report && report.marker !== "failed"
      ? { marker: report.marker, detail: report.marker_detail }
      : await extendMarker(config, platformRoot(args), log, report?.exit_code, report?.kind ?? "unknown");
  return { line: failureLine(report, marker, action), marker: marker.marker };
}
