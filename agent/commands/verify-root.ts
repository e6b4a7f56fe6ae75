// `cvm-unlock verify-root [/sysroot]`: refuse to continue the boot into a root that is not the
// dm-crypt volume cvm-unlock opened (or one the trusted config names).
import { CvmError } from "../../platform/util/errors.ts";
import type { Command } from "../cli/command.ts";
import { configOptions, loadConfig, platformRoot } from "../cli/common.ts";
import { openedStatePath, readOpenedState } from "../unlock/opened-state.ts";
import { verifyRoot, type ExpectedVolume } from "../unlock/verify-root.ts";

export const verifyRootCommand: Command = {
  name: "verify-root",
  usage: "verify-root [options] [MOUNTPOINT]",
  description: "MOUNTPOINT defaults to /sysroot. Exit 0 when it is on our dm-crypt mapping, 15 (volume) otherwise.",
  options: [...configOptions],
  marksFailure: () => true,
  async run(args, io) {
    if (args.positionals.length > 1) throw new CvmError("usage", "verify-root takes at most one MOUNTPOINT");
    const mountPoint = args.positionals[0] ?? "/sysroot";
    const root = platformRoot(args);
    const { config } = loadConfig(args, io.log);
    // Strict read: a state file we cannot trust is a refusal (exit 15), not "nothing was opened".
    const opened = readOpenedState(openedStatePath(config)).map(({ name, uuid }) => ({ name, uuid }));
    // What we opened (exact UUIDs) takes precedence; configured volumes cover a root opened by an earlier run.
    const expected: ExpectedVolume[] = [
      ...opened,
      ...config.unlock.volumes
        .filter((v) => !opened.some((o) => o.name === v.name))
        .map((v) => ({ name: v.name, uuid: v.uuid?.toLowerCase() })),
    ];
    const r = verifyRoot(root, mountPoint, expected);
    io.stdout.write(`${mountPoint}: on dm-crypt ${r.dmName} (${r.dmUuid}), ${r.mount.fsType}: OK\n`);
    return 0;
  },
};
