// `cvm-unlock measure leave-initrd`: the marker extended at the switch to the real root, in every
// case (also when unlock failed or was skipped), from an ExecStop= of a unit that initrd-cleanup
// stops before initrd-switch-root. After it, the PCR/RTMR no longer match what the KBS policy
// requires, so code in the switched-to root cannot obtain the key again.
import { CvmError } from "../../platform/util/errors.ts";
import type { Command } from "../cli/command.ts";
import { configOptions, runContext } from "../cli/common.ts";
import { measureEvent } from "../measure/measure.ts";
import { LEAVE_INITRD_EVENT } from "../measure/events.ts";
import { openedStatePath, readOpenedOutcome } from "../unlock/opened-state.ts";

export const measureCommand: Command = {
  name: "measure",
  usage: "measure leave-initrd [options]",
  description: `Extends ${JSON.stringify(LEAVE_INITRD_EVENT)} into unlock.measure.pcr (every active bank) and the TDX RTMR, and appends it to the event record.`,
  options: [...configOptions],
  async run(args, io) {
    if (args.positionals.length !== 1 || args.positionals[0] !== "leave-initrd")
      throw new CvmError("usage", "usage: measure leave-initrd");
    const ctx = runContext(args, io.log);
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
