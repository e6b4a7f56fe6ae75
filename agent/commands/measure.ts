// `cvm-unlock measure leave-initrd`: the marker extended at the switch to the real root, in every
// case (also when unlock failed or was skipped), from an ExecStop= of a unit that initrd-cleanup
// stops before initrd-switch-root. After it, the PCR/RTMR no longer match what the KBS policy
// requires, so code in the switched-to root cannot obtain the key again.
// `cvm-unlock measure failure`: the failure marker and the one console line of the failure path
// (agent/measure/failure.ts), run by cvm-unlock-failure.service before poweroff/emergency.
import * as fs from "node:fs";
import * as path from "node:path";
import { CvmError, EXIT_CODES } from "../../platform/util/errors.ts";
import type { Command } from "../cli/command.ts";
import { optString } from "../cli/args.ts";
import { configOptions, runContext } from "../cli/common.ts";
import { backstopFailure, FAILURE_ACTIONS, type FailureAction } from "../measure/failure.ts";
import { measureEvent } from "../measure/measure.ts";
import { LEAVE_INITRD_EVENT } from "../measure/events.ts";
import { openedStatePath, readOpenedOutcome } from "../unlock/opened-state.ts";

export const measureCommand: Command = {
  name: "measure",
  usage: "measure leave-initrd|failure [options]",
  description:
    `leave-initrd extends ${JSON.stringify(LEAVE_INITRD_EVENT)} into unlock.measure.pcr (every active bank) and the TDX RTMR, and appends it to the event record.\n` +
    `failure extends "cvm-unlock:failed:<exit code>" unless the agent already did, and prints one line with the exit code and reason (for the console).`,
  options: [
    ...configOptions,
    {
      name: "action",
      kind: "string",
      value: "poweroff|emergency",
      help: "failure: what happens next, named in the console line",
    },
  ],
  async run(args, io) {
    const sub = args.positionals.length === 1 ? args.positionals[0] : undefined;
    if (sub === "failure") {
      const action = optString(args, "action");
      if (action !== undefined && !(FAILURE_ACTIONS as readonly string[]).includes(action))
        throw new CvmError("usage", `--action must be ${FAILURE_ACTIONS.join(" or ")}`);
      const { line, marker } = await backstopFailure(args, io.log, action as FailureAction | undefined);
      io.stdout.write(line + "\n");
      // a marker that could not be extended is this unit's failure (the policy runs regardless)
      return marker === "failed" ? EXIT_CODES.platform : 0;
    }
    if (sub !== "leave-initrd") throw new CvmError("usage", "usage: measure leave-initrd|failure");
    const ctx = await runContext(args, io.log, { initData: false });
    try {
      const root = ctx.env.paths.root;
      // Fail-safe read: a missing or corrupt state file only changes the recorded outcome text,
      // never whether the marker is extended.
      const { outcome, problem } = readOpenedOutcome(openedStatePath(ctx.config));
      if (problem) io.log.warning(`${problem}; extending the leave-initrd marker anyway (outcome ${outcome})`);
      const rec = await measureEvent(
        ctx.config.unlock.measure,
        { root, tpmSpec: ctx.config.platform.tpm, deadline: ctx.deadline, log: io.log },
        "leave-initrd",
        LEAVE_INITRD_EVENT,
        outcome,
      );
      const where = [rec.pcr ? `PCR ${rec.pcr.index}` : "", rec.rtmr ? `RTMR ${rec.rtmr.index}` : ""]
        .filter(Boolean)
        .join(" + ");
      io.stdout.write(`leave-initrd: ${where || "no register present (nothing extended)"} (${outcome})\n`);
      return 0;
    } finally {
      ctx.deadline.dispose();
    }
  },
};
