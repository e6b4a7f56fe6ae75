import type { Command } from "../cli/command.ts";
import { buildInfo } from "../version.ts";

export const versionCommand: Command = {
  name: "version",
  usage: "version",
  options: [],
  async run(_args, io) {
    const b = buildInfo();
    io.stdout.write(`cvm-unlock ${b.version} (commit ${b.commit}; ${b.runtime}; KBS protocol 0.4.0)\n`);
    return 0;
  },
};
