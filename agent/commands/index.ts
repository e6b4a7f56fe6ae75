// The command registry. Each command lives in its own module.
import type { Command } from "../cli/command.ts";
import { versionCommand } from "./version.ts";

export const commands: Command[] = [versionCommand];
