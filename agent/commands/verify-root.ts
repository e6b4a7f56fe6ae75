// `cvm-unlock verify-root [/sysroot]`: refuse to continue the boot into a root that is not the
// dm-crypt volume cvm-unlock opened (or one the trusted config names).
import * as fs from "node:fs";
import * as path from "node:path";
import { CvmError } from "../../platform/util/errors.ts";
import type { Command } from "../cli/command.ts";
import { configOptions, loadConfig } from "../cli/common.ts";
import { DM_NAME_PATTERN } from "../config/unlock-schema.ts";
import { openedStatePath } from "../unlock/unlock.ts";
import { verifyRoot, type ExpectedVolume } from "../unlock/verify-root.ts";

const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

function openedVolumes(statePath: string): ExpectedVolume[] {
  let text: string;
  try {
    text = fs.readFileSync(statePath, "utf8");
  } catch {
    return [];
  }
  try {
    const st = JSON.parse(text) as { volumes?: unknown };
    if (!Array.isArray(st.volumes)) throw new Error("no volumes");
    return st.volumes.map((v: { name?: unknown; uuid?: unknown }) => {
      if (
        typeof v.name !== "string" ||
        !DM_NAME_PATTERN.test(v.name) ||
        typeof v.uuid !== "string" ||
        !UUID_RE.test(v.uuid)
      )
        throw new Error("bad entry");
      return { name: v.name, uuid: v.uuid };
    });
  } catch (e) {
    throw new CvmError("volume", `${statePath} is malformed (${(e as Error).message})`);
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
    const root = path.resolve((args.options.get("platform-root") as string | undefined) ?? "/");
    const { config } = loadConfig(args, io.log);
    const opened = openedVolumes(openedStatePath(config));
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
