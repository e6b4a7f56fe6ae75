// `cvm-unlock verify-root [/sysroot]`: refuse to continue the boot into a root that is not the
// dm-crypt volume cvm-unlock opened (or one the trusted config names), or the dm-verity volume it
// opened with the KBS's root hash.
import { CvmError } from "../../platform/util/errors.ts";
import type { Command } from "../cli/command.ts";
import { configOptions, loadConfig, platformRoot } from "../cli/common.ts";
import { openedStatePath, readOpenedState } from "../unlock/opened-state.ts";
import { verifyRoot, type ExpectedVerity, type ExpectedVolume } from "../unlock/verify-root.ts";
import { findCryptsetup, runCryptsetup } from "../unlock/cryptsetup.ts";
import { readVerityState, verityStatePath } from "../verity/state.ts";
import { Deadline } from "../../platform/util/deadline.ts";
import type { Config } from "../config/schema.ts";

/** The verity volumes unlock opened, each with its live table (read with dmsetup only when there are some). */
async function openedVerity(config: Config): Promise<ExpectedVerity[]> {
  const recorded = readVerityState(verityStatePath(config));
  if (recorded.length === 0) return [];
  const dmsetup = findCryptsetup(config.unlock.dmsetup, "dmsetup");
  const deadline = new Deadline(60_000);
  try {
    const out: ExpectedVerity[] = [];
    for (const v of recorded) {
      const r = await runCryptsetup(dmsetup, ["table", v.name], undefined, deadline, "reading the dm table of");
      // an unreadable table is an empty one: onOurVerity refuses it if the root is on this volume
      out.push({ ...v, table: r.code === 0 ? r.stdout : "" });
    }
    return out;
  } finally {
    deadline.dispose();
  }
}

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
    const r = verifyRoot(root, mountPoint, expected, await openedVerity(config));
    const kind = r.dmUuid.startsWith("CRYPT-VERITY-") ? "dm-verity" : "dm-crypt";
    io.stdout.write(`${mountPoint}: on ${kind} ${r.dmName} (${r.dmUuid}), ${r.mount.fsType}: OK\n`);
    return 0;
  },
};
