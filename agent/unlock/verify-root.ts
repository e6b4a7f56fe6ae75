// Before switch-root: the filesystem mounted at /sysroot must sit directly on a dm-crypt mapping
// that cvm-unlock opened (a configured name with the matching LUKS UUID), or on a dm-verity mapping
// it opened with the root hash the KBS released (recorded in verity.json, checked in the live table). A plaintext root, or a
// mapping with an unknown name/UUID, is refused: otherwise a host could boot its own root inside
// our attested VM.
import * as path from "node:path";
import { CvmError } from "../../platform/util/errors.ts";
import { fileText, readFileBounded } from "../../platform/util/files.ts";
import { cryptDmUuid, readSmall } from "../../platform/luks/block-devices.ts";
import { tableCarriesHash } from "../verity/table.ts";

const MAX_MOUNTINFO = 1024 * 1024;

export interface MountEntry {
  devno: string;
  mountPoint: string;
  fsType: string;
  source: string;
}

/** proc_pid_mountinfo(5): "id parent maj:min root mountpoint opts [optional...] - fstype source superopts". */
export function parseMountinfo(text: string): MountEntry[] {
  if (text.length > MAX_MOUNTINFO) throw new CvmError("volume", "mountinfo is implausibly large");
  const out: MountEntry[] = [];
  for (const line of text.split("\n")) {
    if (!line) continue;
    const f = line.split(" ");
    const dash = f.indexOf("-", 6);
    // The separator must be followed by the filesystem type and the source (a line ending in " -" has neither).
    if (f.length < 10 || dash === -1 || dash + 2 >= f.length || !/^\d+:\d+$/.test(f[2]!))
      throw new CvmError("volume", `malformed mountinfo line: ${JSON.stringify(line.slice(0, 200))}`);
    const unescape = (s: string) => s.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));
    out.push({ devno: f[2]!, mountPoint: unescape(f[4]!), fsType: f[dash + 1]!, source: unescape(f[dash + 2]!) });
  }
  return out;
}

export interface ExpectedVolume {
  name: string;
  uuid?: string | undefined;
}

/** A dm-verity volume cvm-unlock opened: its recorded root hash and its live table (`dmsetup table`). */
export interface ExpectedVerity {
  name: string;
  roothash: string;
  table: string;
}

export interface RootCheck {
  mount: MountEntry;
  dmName: string;
  dmUuid: string;
}

/** Kernel file systems with no backing store the host could write (a tmpfs under the root is fine). */
const PSEUDO_FS = new Set([
  "tmpfs",
  "ramfs",
  "proc",
  "sysfs",
  "devtmpfs",
  "devpts",
  "securityfs",
  "cgroup",
  "cgroup2",
  "efivarfs",
  "configfs",
  "debugfs",
  "tracefs",
  "mqueue",
  "hugetlbfs",
  "bpf",
  "pstore",
  "autofs",
  "binfmt_misc",
]);

/** The dm-verity volume cvm-unlock opened with the KBS's root hash (agent/verity), or a volume error. */
function onOurVerity(
  what: string,
  mount: MountEntry,
  dmName: string,
  dmUuid: string,
  verity: ExpectedVerity[],
): RootCheck {
  const v = verity.find((x) => x.name === dmName);
  if (!v)
    throw new CvmError(
      "volume",
      `${what} is on dm-verity ${dmName}, which cvm-unlock did not open with a root hash from the KBS: refusing`,
    );
  const escaped = dmName.replace(/[.+]/g, "\\$&");
  if (!new RegExp(`^CRYPT-VERITY-([0-9a-f]{32}-)?${escaped}$`).test(dmUuid))
    throw new CvmError(
      "volume",
      `${what} is on dm device ${dmName} with dm uuid ${dmUuid}, not a veritysetup mapping: refusing`,
    );
  const problem = tableCarriesHash(v.table, v.roothash);
  if (problem) throw new CvmError("volume", `${what} is on dm-verity ${dmName}, but ${problem}: refusing`);
  return { mount, dmName, dmUuid };
}

/** The dm-crypt (or dm-verity) volume cvm-unlock opened that `mount` is on, or a volume error naming `what`. */
function onOurVolume(
  root: string,
  what: string,
  mount: MountEntry,
  expected: ExpectedVolume[],
  verity: ExpectedVerity[],
): RootCheck {
  const dmDir = path.join(root, "sys/dev/block", mount.devno, "dm");
  const dmName = readSmall(path.join(dmDir, "name"))?.trim();
  const dmUuid = readSmall(path.join(dmDir, "uuid"))?.trim() ?? "";
  if (dmName === undefined)
    throw new CvmError(
      "volume",
      `${what} is on ${mount.source} (${mount.devno}), which is not a device-mapper device: refusing a plaintext root`,
    );
  if (dmUuid.startsWith("CRYPT-VERITY-")) return onOurVerity(what, mount, dmName, dmUuid, verity);
  if (!dmUuid.startsWith("CRYPT-"))
    throw new CvmError(
      "volume",
      `${what} is on dm device ${dmName} (uuid ${JSON.stringify(dmUuid)}), which is not dm-crypt: refusing`,
    );
  const ok = expected.find((v) => v.name === dmName);
  if (!ok)
    throw new CvmError(
      "volume",
      `${what} is on dm-crypt ${dmName}, which is not a volume cvm-unlock opens (${expected.map((v) => v.name).join(", ") || "none configured"}): refusing`,
    );
  if (ok.uuid !== undefined && dmUuid !== cryptDmUuid(ok.uuid, ok.name))
    throw new CvmError(
      "volume",
      `${what} is on dm-crypt ${dmName} with dm uuid ${dmUuid}, expected ${cryptDmUuid(ok.uuid, ok.name)}: refusing`,
    );
  if (
    ok.uuid === undefined &&
    !new RegExp(`^CRYPT-LUKS2-[0-9a-f]{32}-${dmName.replace(/[.+]/g, "\\$&")}$`).test(dmUuid)
  )
    throw new CvmError(
      "volume",
      `${what} is on dm-crypt ${dmName} with dm uuid ${dmUuid}, which is not a LUKS2 mapping of that name: refusing`,
    );
  return { mount, dmName, dmUuid };
}

/**
 * Check the mount at `mountPoint`, and everything mounted below it (a host-chosen /usr on the
 * root would run as its init); `root` is the platform root for /proc and /sys.
 */
export function verifyRoot(
  root: string,
  mountPoint: string,
  expected: ExpectedVolume[],
  verity: ExpectedVerity[] = [],
): RootCheck {
  const mounts = parseMountinfo(readMountinfo(root));
  const target = path.posix.normalize(mountPoint).replace(/(.)\/$/, "$1");
  // The last entry for a mount point is the visible one (later mounts stack on top).
  const mount = mounts.filter((m) => m.mountPoint === target).pop();
  if (!mount) throw new CvmError("volume", `nothing is mounted at ${target}`);
  const check = onOurVolume(root, target, mount, expected, verity);
  const below = target === "/" ? "/" : `${target}/`;
  for (const m of mounts.filter((x) => x.mountPoint.startsWith(below) && x.mountPoint !== target)) {
    if (PSEUDO_FS.has(m.fsType) && m.devno.startsWith("0:")) continue;
    onOurVolume(root, `${m.mountPoint} (${m.fsType}, mounted below the root)`, m, expected, verity);
  }
  return check;
}

function readMountinfo(root: string): string {
  const p = path.join(root, "proc/self/mountinfo");
  return fileText(readFileBounded(p, { what: "the mount table", max: MAX_MOUNTINFO, kind: "volume" }));
}
