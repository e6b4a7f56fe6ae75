// cvm-unlock entry point: global options, command dispatch, error -> exit code mapping.
import { CvmError, errorMessage } from "../platform/util/errors.ts";
import { runExitCleanups } from "../platform/util/exit-cleanup.ts";
import { createLogger, defaultLogFormat, LOG_FORMATS, type LogFormat } from "../platform/util/log.ts";
import { formatOptions, parseArgs, type ParsedArgs } from "./cli/args.ts";
import { globalOptions } from "./cli/global-options.ts";
import type { Command } from "./cli/command.ts";
import { commands, type CommandEntry } from "./commands/index.ts";

function usage(): string {
  const w = Math.max(...commands.map((c) => c.name.length));
  return [
    "usage: cvm-unlock COMMAND [options]",
    "",
    "Attests this confidential VM to a trustee KBS and releases a disk key.",
    "",
    "commands:",
    ...commands.map((c) => `  ${c.name.padEnd(w)}  ${c.summary}`),
    "",
    "Run 'cvm-unlock COMMAND --help' for a command's options. Exit codes: docs/CLI.md.",
  ].join("\n");
}

function commandHelp(entry: CommandEntry, c: Command): string {
  return [
    `usage: cvm-unlock ${c.usage}`,
    "",
    entry.summary + ".",
    ...(c.description ? ["", c.description] : []),
    "",
    "options:",
    formatOptions([...c.options, ...globalOptions]),
  ].join("\n");
}

async function main(argv: string[]): Promise<number> {
  for (const sig of ["SIGTERM", "SIGINT", "SIGHUP"] as const) {
    // As PID 1 (or under systemd) default signal actions may be dropped; exit explicitly.
    process.on(sig, () => {
      runExitCleanups(); // e.g. remove a configfs-tsm entry: `finally` blocks do not run on exit()
      process.exit(128 + (sig === "SIGINT" ? 2 : sig === "SIGHUP" ? 1 : 15));
    });
  }
  const [name, ...rest] = argv;
  const stderrFormat = defaultLogFormat();
  if (name === undefined || name === "--help" || name === "-h" || name === "help") {
    (name === undefined ? process.stderr : process.stdout).write(usage() + "\n");
    return name === undefined ? 2 : 0;
  }
  const entry = commands.find((c) => c.name === (name === "--version" ? "version" : name));
  let log = createLogger({ format: stderrFormat, verbose: false });
  if (!entry) {
    log.error(`unknown command '${name}'`);
    process.stderr.write(usage() + "\n");
    return 2;
  }
  const cmd = await entry.load();
  let args: ParsedArgs | undefined;
  try {
    args = parseArgs(rest, [...cmd.options, ...globalOptions]);
    const fmt = args.options.get("log-format");
    if (fmt !== undefined && !LOG_FORMATS.includes(fmt as LogFormat))
      throw new CvmError("usage", `--log-format must be one of ${LOG_FORMATS.join(", ")}`);
    log = createLogger({
      format: (fmt as LogFormat | undefined) ?? stderrFormat,
      verbose: args.options.get("verbose") === true,
    });
    if (args.options.get("help") === true) {
      process.stdout.write(commandHelp(entry, cmd) + "\n");
      return 0;
    }
    return await cmd.run(args, { log, stdout: process.stdout });
  } catch (e) {
    const code = e instanceof CvmError ? e.exitCode : 1;
    if (e instanceof CvmError) {
      log.error(e.message, e.hint ? { hint: e.hint } : undefined);
      if (e.kind === "usage") process.stderr.write(`Try 'cvm-unlock ${cmd.name} --help'.\n`);
    } else {
      log.error(`internal error: ${errorMessage(e)}`);
      if (e instanceof Error && e.stack) log.debug(e.stack);
    }
    // Before the unit fails and its OnFailure= policy runs (no args: the unit's command line is
    // broken, and the backstop unit marks the failure).
    if (args && cmd.marksFailure?.(args)) {
      const { recordFailure } = await import("./measure/failure.ts");
      await recordFailure(args, log, {
        command: cmd.name,
        exitCode: code,
        kind: e instanceof CvmError ? e.kind : "internal",
        reason: errorMessage(e),
      });
    }
    return code;
  }
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
    // Do not wait for idle keep-alive sockets or timers.
    setImmediate(() => process.exit(code));
  },
  (e) => {
    process.stderr.write(`cvm-unlock: fatal: ${errorMessage(e)}\n`);
    process.exit(1);
  },
);
