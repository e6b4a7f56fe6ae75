// `cvm-unlock verify-mapping NAME`: after systemd-cryptsetup@NAME (mode B), check the live dm-crypt
// table against the header serve-keys verified; on a difference take the mapping down (exit 15).
import { CvmError } from "../../platform/util/errors.ts";
import { Deadline } from "../../platform/util/deadline.ts";
import { optString } from "../cli/args.ts";
import type { Command } from "../cli/command.ts";
import { configOptions, crypttabOptions, loadConfig, platformRoot } from "../cli/common.ts";
import { DEFAULT_CRYPTTAB, DEFAULT_KEY_SOCKET } from "../unlock/crypttab.ts";
import { verifyMapping } from "../unlock/verify-mapping.ts";

const TIMEOUT_MS = 60_000;

export const verifyMappingCommand: Command = {
  name: "verify-mapping",
  usage: "verify-mapping [options] NAME",
  description:
    "Mode B, after systemd-cryptsetup@NAME: exit 0 when the live dm-crypt table is what the verified header implies\n" +
    "(or NAME does not use the key socket), 15 (volume) otherwise, after closing the mapping.",
  options: [...configOptions, ...crypttabOptions],
  marksFailure: () => true,
  async run(args, io) {
    const name = args.positionals.length === 1 ? args.positionals[0]! : undefined;
    if (name === undefined) throw new CvmError("usage", "verify-mapping takes one NAME (the crypttab volume)");
    const { config } = loadConfig(args, io.log);
    const deadline = new Deadline(TIMEOUT_MS);
    try {
      const r = await verifyMapping({
        name,
        crypttab: optString(args, "crypttab") ?? DEFAULT_CRYPTTAB,
        socket: optString(args, "socket") ?? DEFAULT_KEY_SOCKET,
        config,
        root: platformRoot(args),
        deadline,
      });
      io.stdout.write(
        r === "checked"
          ? `${name}: the live dm-crypt table matches the verified header: OK\n`
          : `${name}: not a volume of the cvm-unlock key socket: nothing to check\n`,
      );
      return 0;
    } finally {
      deadline.dispose();
    }
  },
};
