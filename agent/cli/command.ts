// A subcommand: its own options table (for parsing and --help) and a run function.
import type { Logger } from "../../platform/util/log.ts";
import type { OptionSpec, ParsedArgs } from "./args.ts";

export interface CommandIO {
  log: Logger;
  /** Where human/JSON results go (process.stdout). Secrets only when the command says so. */
  stdout: NodeJS.WriteStream;
}

export interface Command {
  name: string;
  summary: string;
  usage: string; // e.g. "fetch [options] REPO/TYPE/TAG"
  description?: string;
  options: OptionSpec[];
  run(args: ParsedArgs, io: CommandIO): Promise<number>;
}
