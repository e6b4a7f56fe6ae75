// Which device holds a configured volume: explicit path, LUKS UUID, GPT partition label, or the
// Discoverable Partitions root type. Waits (bounded) for the device to appear; ambiguity is an
// error, never a guess (a host can attach a second disk with the same label).
import * as fs from "node:fs";
import * as path from "node:path";
import type { Deadline } from "../util/deadline.ts";
import { CvmError, errorMessage } from "../util/errors.ts";
import type { Logger } from "../util/log.ts";
import { readFileIfReadable } from "../util/files.ts";
import { listBlockDevices, readSmall, type BlockDevice } from "./block-devices.ts";
import { GPT_FLAG_NO_AUTO, GPT_ROOT_X86_64, parseGptEntries, parseGptHeader, type GptPartition } from "./gpt.ts";

export interface VolumeSelector {
  name: string;
  uuid?: string | undefined;
  partlabel?: string | undefined;
  gpt_auto_root: boolean;
  device?: string | undefined;
}

/** systemd-boot / systemd-stub: the ESP's partition UUID, naming the disk to search. */
/** LoaderDevicePartUUID is 4 attribute bytes + a 36-character UTF-16 string; a page is plenty. */
const MAX_EFI_VARIABLE = 4096;
const LOADER_PART_UUID_VAR = "sys/firmware/efi/efivars/LoaderDevicePartUUID-4a67b082-0a4c-41cf-b6c7-440b29bb8c4f";
const POLL_MS = 250;

export function describeSelector(v: VolumeSelector): string {
  if (v.device) return `device ${v.device}`;
  if (v.uuid) return `LUKS UUID ${v.uuid}`;
  if (v.partlabel) return `partition label ${JSON.stringify(v.partlabel)}`;
  if (v.gpt_auto_root) return `GPT root partition (type ${GPT_ROOT_X86_64})`;
  return "no selector";
}

export function hasSelector(v: VolumeSelector): boolean {
  return !!(v.device || v.uuid || v.partlabel || v.gpt_auto_root);
}

/** A volume without a selector can never be found (also checked by `config --check`). */
export function requireSelector(v: VolumeSelector): void {
  if (!hasSelector(v))
    throw new CvmError("config", `volume ${v.name}: set one of device, uuid, partlabel or gpt_auto_root`);
}

/** One attempt; undefined = not there (yet). Throws on ambiguity or a configuration error. */
export function findDevice(v: VolumeSelector, root: string): string | undefined {
  requireSelector(v);
  if (v.device) return fs.existsSync(v.device) ? v.device : undefined;
  if (v.uuid) {
    const link = path.join(root, "dev/disk/by-uuid", v.uuid.toLowerCase());
    return fs.existsSync(link) ? link : undefined;
  }
  if (v.partlabel) return findPartLabel(root, v.partlabel);
  return findGptAutoRoot(root);
}

function readGpt(disk: BlockDevice, root: string): GptPartition[] {
  const lbs = Number(
    readSmall(path.join(root, "sys/class/block", disk.name, "queue/logical_block_size"))?.trim() ?? "512",
  );
  const sector = [512, 4096].includes(lbs) ? lbs : 512;
  const fd = fs.openSync(disk.devPath, "r");
  try {
    const hdrBuf = Buffer.alloc(sector);
    if (fs.readSync(fd, hdrBuf, 0, sector, sector) !== sector) throw new Error("short read of LBA 1");
    const h = parseGptHeader(hdrBuf);
    const len = h.entryCount * h.entrySize;
    const arr = Buffer.alloc(len);
    if (fs.readSync(fd, arr, 0, len, Number(h.entriesLba) * sector) !== len)
      throw new Error("short read of the partition entries");
    return parseGptEntries(h, arr);
  } finally {
    fs.closeSync(fd);
  }
}

function loaderPartUuid(root: string): string | undefined {
  const raw = readFileIfReadable(path.join(root, LOADER_PART_UUID_VAR), {
    what: "EFI variable LoaderDevicePartUUID",
    max: MAX_EFI_VARIABLE,
  });
  if (raw === undefined) return undefined;
  // efivarfs: 4 attribute bytes, then a UTF-16LE string.
  const s = Buffer.from(raw.subarray(4)).toString("utf16le").replace(/\0+$/, "").trim().toLowerCase();
  return /^[0-9a-f-]{36}$/.test(s) ? s : undefined;
}

/** The GPT partitions of every disk (not partitions, dm or loop devices) that `keepDisk` accepts. */
function gptPartitions(
  root: string,
  devices: BlockDevice[],
  keepDisk: (parts: GptPartition[]) => boolean = () => true,
): { disk: BlockDevice; part: GptPartition }[] {
  const out: { disk: BlockDevice; part: GptPartition }[] = [];
  for (const disk of devices.filter((d) => !d.isPartition && !d.name.startsWith("dm-") && !d.name.startsWith("loop"))) {
    let parts: GptPartition[];
    try {
      parts = readGpt(disk, root);
    } catch {
      continue; // not a GPT disk (or unreadable): not a candidate
    }
    if (keepDisk(parts)) for (const part of parts) out.push({ disk, part });
  }
  return out;
}

function findGptAutoRoot(root: string): string | undefined {
  const devices = listBlockDevices(root);
  const esp = loaderPartUuid(root);
  const found = gptPartitions(root, devices, (parts) => !esp || parts.some((p) => p.uniqueGuid === esp)).filter(
    ({ part: p }) => p.typeGuid === GPT_ROOT_X86_64 && (p.attributes & GPT_FLAG_NO_AUTO) === 0n,
  );
  if (found.length > 1)
    throw new CvmError(
      "volume",
      `${found.length} GPT root partitions found (${found.map((f) => `${f.disk.name}#${f.part.number}`).join(", ")}): refusing to guess`,
      {
        hint: "boot through systemd-boot/systemd-stub (sets LoaderDevicePartUUID) or configure the volume by uuid",
      },
    );
  const hit = found[0];
  if (!hit) return undefined;
  const part = devices.find((d) => d.isPartition && d.parent === hit.disk.name && d.partNumber === hit.part.number);
  return part?.devPath;
}

/** Wait for the volume's device, bounded by device_timeout_s and the overall deadline. */
export async function waitForDevice(
  v: VolumeSelector,
  root: string,
  timeoutS: number,
  deadline: Deadline,
  log: Logger,
): Promise<string> {
  return waitUntilFound(() => findDevice(v, root), `volume ${v.name}: ${describeSelector(v)}`, timeoutS, deadline, log);
}

/** Poll `find` until it names a device, bounded by `timeoutS` and the overall deadline; `what` names it in messages. */
export async function waitUntilFound(
  find: () => string | undefined,
  what: string,
  timeoutS: number,
  deadline: Deadline,
  log: Logger,
): Promise<string> {
  const until = Date.now() + Math.min(timeoutS * 1000, deadline.remainingMs());
  let announced = false;
  for (;;) {
    let dev: string | undefined;
    try {
      dev = find();
    } catch (e) {
      if (e instanceof CvmError) throw e;
      throw new CvmError("volume", `looking for ${what}: ${errorMessage(e)}`);
    }
    if (dev) return dev;
    if (Date.now() >= until) {
      deadline.check(`waiting for ${what}`);
      throw new CvmError("volume", `${what} did not appear within ${timeoutS}s`, {
        hint: "check that the disk is attached and its driver is in the initramfs; raise unlock.device_timeout_s if it is slow",
      });
    }
    if (!announced) (log.info(`waiting for ${what} (up to ${timeoutS}s)`), (announced = true));
    await deadline.sleep(Math.min(POLL_MS, Math.max(1, until - Date.now())), `waiting for ${what}`);
  }
}

/**
 * The partition whose GPT unique GUID is `partUuid` (read from the partition tables, not from udev),
 * or undefined while it is absent. With `typeGuid` its partition type must match too. Two partitions
 * with the same GUID (a host that attached a copy of the disk) are refused, never guessed between.
 */
export function findGptPartition(root: string, partUuid: string, typeGuid?: string): string | undefined {
  const devices = listBlockDevices(root);
  const found = gptPartitions(root, devices).filter(({ part }) => part.uniqueGuid === partUuid.toLowerCase());
  if (found.length > 1)
    throw new CvmError(
      "volume",
      `partition UUID ${partUuid} is on ${found.length} partitions (${found.map((f) => `${f.disk.name}#${f.part.number}`).join(", ")}): refusing to guess`,
    );
  const hit = found[0];
  if (!hit) return undefined;
  if (typeGuid !== undefined && hit.part.typeGuid !== typeGuid)
    throw new CvmError(
      "volume",
      `partition ${partUuid} (${hit.disk.name}#${hit.part.number}) has type ${hit.part.typeGuid}, expected ${typeGuid}: refusing`,
    );
  return devices.find((d) => d.isPartition && d.parent === hit.disk.name && d.partNumber === hit.part.number)?.devPath;
}

/** The partition labelled `label`; two of them are refused. */
export function findPartLabel(root: string, label: string): string | undefined {
  const hits = listBlockDevices(root).filter((d) => d.isPartition && d.partName === label);
  if (hits.length > 1)
    throw new CvmError(
      "volume",
      `partition label ${JSON.stringify(label)} is on ${hits.length} partitions (${hits.map((h) => h.name).join(", ")}): refusing to guess`,
    );
  return hits[0]?.devPath;
}
