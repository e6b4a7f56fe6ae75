// A subcommand: its own options table (for parsing and --help) and a run function.
// Its one-line summary lives in the registry (agent/commands/index.ts), which loads it lazily.
import type { Logger } from "../../platform/util/log.ts";
import type { OptionSpec, ParsedArgs } from "./args.ts";

export interface CommandIO {
  log: Logger;
  /** Where human/JSON results go (process.stdout). Secrets only when the command says so. */
  stdout: NodeJS.WriteStream;
}

export interface Command {
  name: string;
  usage: string; // e.g. "fetch [options] REPO/TYPE/TAG"
  description?: string;
  options: OptionSpec[];
  run(args: ParsedArgs, io: CommandIO): Promise<number>;
  /**
   * Commands of the initrd boot whose failure triggers the failure policy: main.ts extends the
   * failure marker and writes the failure report when this returns true (agent/measure/failure.ts).
   */
  marksFailure?(args: ParsedArgs): boolean;
}
