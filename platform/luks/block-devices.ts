// Block devices as sysfs shows them (<root>/sys/class/block/*), and the device-mapper state.
// All reads are small and bounded; everything here is host-influenced (udev names, partition
// labels, disk contents), so callers re-verify identity from the LUKS2 header itself.
import * as fs from "node:fs";
import * as path from "node:path";
import { fileText, readFileIfReadable } from "../util/files.ts";

const MAX_DEVICES = 4096;
/** sysfs attributes are at most one page. */
const MAX_SMALL_FILE = 4096;

export interface BlockDevice {
  /** Kernel name, e.g. "vda1". */
  name: string;
  /** Path of the device node (under the platform root). */
  devPath: string;
  isPartition: boolean;
  /** For partitions: the parent disk's kernel name. */
  parent?: string;
  partNumber?: number;
  partName?: string;
  /** "MAJ:MIN". */
  devno?: string;
}

/**
 * A sysfs attribute's text, or undefined when absent or unreadable (the caller then falls back).
 * One larger than a page is not what the kernel wrote: refused, not truncated.
 */
export function readSmall(p: string): string | undefined {
  const b = readFileIfReadable(p, { what: "sysfs attribute", max: MAX_SMALL_FILE });
  return b && fileText(b);
}

function parseUevent(text: string): Map<string, string> {
  const m = new Map<string, string>();
  for (const line of text.split("\n")) {
    const eq = line.indexOf("=");
    if (eq > 0) m.set(line.slice(0, eq), line.slice(eq + 1));
  }
  return m;
}

export function listBlockDevices(root: string): BlockDevice[] {
  const dir = path.join(root, "sys/class/block");
  let names: string[];
  try {
    names = fs.readdirSync(dir).slice(0, MAX_DEVICES);
  } catch {
    return [];
  }
  const out: BlockDevice[] = [];
  for (const name of names) {
    if (!/^[A-Za-z0-9_.:+-]{1,64}$/.test(name)) continue;
    const sysDir = path.join(dir, name);
    const ue = parseUevent(readSmall(path.join(sysDir, "uevent")) ?? "");
    const devName = ue.get("DEVNAME") ?? name;
    if (devName.includes("..")) continue;
    const isPartition = ue.get("DEVTYPE") === "partition" || fs.existsSync(path.join(sysDir, "partition"));
    const dev: BlockDevice = { name, devPath: path.join(root, "dev", devName), isPartition };
    const devno = readSmall(path.join(sysDir, "dev"))?.trim();
    if (devno && /^\d+:\d+$/.test(devno)) dev.devno = devno;
    if (isPartition) {
      const pn = Number(ue.get("PARTN") ?? readSmall(path.join(sysDir, "partition"))?.trim());
      if (Number.isInteger(pn) && pn > 0) dev.partNumber = pn;
      const label = ue.get("PARTNAME");
      if (label !== undefined) dev.partName = label;
      try {
        dev.parent = path.basename(path.dirname(fs.realpathSync(sysDir)));
      } catch {
        /* no parent: not usable for gpt-auto */
      }
    }
    out.push(dev);
  }
  return out;
}

export interface DmState {
  name: string;
  /** e.g. CRYPT-LUKS2-<uuid without dashes>-<name>. */
  uuid: string;
  devno?: string;
}

/** Device-mapper devices (sysfs dm/name, dm/uuid). */
export function listDmDevices(root: string): DmState[] {
  const out: DmState[] = [];
  for (const d of listBlockDevices(root)) {
    if (!d.name.startsWith("dm-")) continue;
    const base = path.join(root, "sys/class/block", d.name, "dm");
    const name = readSmall(path.join(base, "name"))?.trim();
    const uuid = readSmall(path.join(base, "uuid"))?.trim();
    if (name) out.push({ name, uuid: uuid ?? "", ...(d.devno ? { devno: d.devno } : {}) });
  }
  return out;
}

/** The dm uuid cryptsetup gives a LUKS2 mapping. */
export function cryptDmUuid(luksUuid: string, name: string): string {
  return `CRYPT-LUKS2-${luksUuid.replace(/-/g, "").toLowerCase()}-${name}`;
}
