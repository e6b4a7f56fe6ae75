// `cvm-unlock detect`: every evidence source, whether it is present, and why it was taken or passed over.
import { optBool } from "../cli/args.ts";
import type { Command } from "../cli/command.ts";
import { configOptions, runContext } from "../cli/common.ts";
import { describePlatform } from "../describe.ts";
import { probeAll } from "../select.ts";
import { evidenceSources } from "../../platform/registry.ts";

const MARK = { present: "+", absent: "-", broken: "!" } as const;

export const detectCommand: Command = {
  name: "detect",
  usage: "detect [options]",
  description: "Exit status 0 when a source would be chosen, 4 (platform) when none is usable.",
  options: [...configOptions, { name: "json", kind: "bool", help: "print JSON" }],
  async run(args, io) {
    const ctx = runContext(args, io.log);
    try {
      const candidates = await probeAll(ctx.env, ctx.config.platform, evidenceSources);
      const chosen = candidates.find((c) => c.chosen);
      const platform = chosen ? await describePlatform(ctx.env, chosen.source) : [];
      if (optBool(args, "json")) {
        const out = {
          chosen: chosen ? { source: chosen.source.id, tee: chosen.probe.tee } : null,
          platform,
          candidates: candidates.map((c) => ({
            source: c.source.id,
            status: c.probe.status,
            present: c.probe.status === "present",
            tee: c.probe.tee ?? null,
            chosen: c.chosen,
            why: c.why,
            reason: c.probe.reason,
            hint: c.probe.hint ?? null,
            details: c.probe.details ?? {},
          })),
        };
        io.stdout.write(JSON.stringify(out, null, 2) + "\n");
      } else {
        for (const c of candidates) {
          const mark = c.chosen ? "*" : MARK[c.probe.status];
          const what = c.probe.status === "present" ? `tee=${c.probe.tee}` : c.probe.status;
          io.stdout.write(`${mark} ${c.source.id.padEnd(11)} ${what}: ${c.probe.reason}\n`);
          io.stdout.write(`  ${" ".repeat(11)} ${c.chosen ? "chosen" : "passed over"}: ${c.why}\n`);
          if (c.probe.hint) io.stdout.write(`  ${" ".repeat(11)} hint: ${c.probe.hint}\n`);
          for (const [k, v] of Object.entries(c.probe.details ?? {}))
            io.stdout.write(`  ${" ".repeat(11)} ${k}: ${v}\n`);
        }
        io.stdout.write(
          chosen
            ? `\nwould attest as tee '${chosen.probe.tee}' (source ${chosen.source.id})\n`
            : "\nno usable evidence source\n",
        );
        if (platform.length) io.stdout.write(`\n${platform.join("\n")}\n`);
      }
      return chosen ? 0 : 4;
    } finally {
      ctx.deadline.dispose();
    }
  },
};
