// The command registry. Each command lives in its own module.
import type { Command } from "../cli/command.ts";
import { detectCommand } from "./detect.ts";
import { evidenceCommand } from "./evidence.ts";
import { fetchCommand } from "./fetch.ts";
import { versionCommand } from "./version.ts";

export const commands: Command[] = [
  detectCommand,
  evidenceCommand,
  fetchCommand,
  versionCommand,
];
