// The command registry. Each command lives in its own module.
import type { Command } from "../cli/command.ts";
import { detectCommand } from "./detect.ts";
import { evidenceCommand } from "./evidence.ts";
import { fetchCommand } from "./fetch.ts";
import { inspectCommand } from "./inspect.ts";
import { versionCommand } from "./version.ts";
import { unlockCommand } from "./unlock.ts";
import { bindCommand } from "./bind.ts";
import { configCommand } from "./config.ts";
import { measureCommand } from "../unlock/measure-command.ts";
import { verifyRootCommand } from "../unlock/verify-root-command.ts";

export const commands: Command[] = [
  detectCommand,
  evidenceCommand,
  fetchCommand,
  inspectCommand,
  versionCommand,
  unlockCommand,
  bindCommand,
  configCommand,
  measureCommand,
  verifyRootCommand,
];
