// --timings / --timings-json, shared by the commands that run phases (fetch, evidence, unlock).
// The timeline holds durations only, so both outputs are free of secrets.
import * as fs from "node:fs";
import type { Timeline } from "../timeline.ts";
import { optBool, optString, type OptionSpec, type ParsedArgs } from "./args.ts";

export const timingOptions: OptionSpec[] = [
  { name: "timings", kind: "bool", help: "print the phase timeline to stderr when done" },
  { name: "timings-json", kind: "string", value: "FILE", help: "write the phase timeline as JSON to FILE" },
];

export function reportTimeline(args: ParsedArgs, timeline: Timeline): void {
  if (optBool(args, "timings"))
    process.stderr.write(
      `phase timeline:\n${timeline.format()}\n  ${"total".padEnd(10)} ${timeline.totalMs().toFixed(1).padStart(9)} ms\n`,
    );
  const file = optString(args, "timings-json");
  if (file !== undefined) fs.writeFileSync(file, JSON.stringify(timeline.toJSON()) + "\n");
}
