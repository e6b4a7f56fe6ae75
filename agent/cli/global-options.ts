// Options every command accepts (parsed with the command's own table; listed in every --help and
// in the generated shell completion).
import { LOG_FORMATS } from "../../platform/util/log.ts";
import type { OptionSpec } from "./args.ts";

export const globalOptions: OptionSpec[] = [
  {
    name: "log-format",
    kind: "string",
    value: LOG_FORMATS.join("|"),
    help: "log format on stderr (default: journal when stderr is the journal, kmsg on /dev/kmsg, text otherwise)",
  },
  { name: "verbose", kind: "bool", help: "debug logging" },
  { name: "help", kind: "bool", help: "show help" },
];
