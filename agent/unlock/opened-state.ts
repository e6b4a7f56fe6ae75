// /run/cvm-unlock/opened.json: which volumes `unlock` opened (dm name, LUKS UUID, device; never
// key material). `unlock` writes it, `verify-root` reads it strictly (it decides whether the boot
// may continue), `measure leave-initrd` reads it fail-safe (see readOpenedOutcome).
// Format: {"version": 1, "volumes": [{"name", "uuid", "device"}]} (docs/UNLOCK.md).
import * as path from "node:path";
import { errorMessage } from "../../platform/util/errors.ts";
import { writeFileAtomic } from "../../platform/util/files.ts";
import { decodeStateVolumes, readStateFile } from "./state-file.ts";
import { DM_NAME_PATTERN } from "../config/unlock-schema.ts";
import type { Config } from "../config/schema.ts";

export const OPENED_STATE_VERSION = 1;
/** A few volumes of ~200 bytes each; anything larger was not written by us. */
const MAX_STATE_BYTES = 64 * 1024;
const MAX_VOLUMES = 64;
const LUKS_UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

export interface OpenedVolume {
  name: string;
  /** Lower-case LUKS UUID, as the header codec returns it. */
  uuid: string;
  device: string;
}

/** The state file sits next to the event record (unlock.measure.record_path), in /run. */
export function openedStatePath(config: Config): string {
  return path.join(path.dirname(config.unlock.measure.record_path), "opened.json");
}

export function encodeOpenedState(volumes: OpenedVolume[]): string {
  return JSON.stringify({ version: OPENED_STATE_VERSION, volumes }) + "\n";
}

/** Strict: every deviation from what encodeOpenedState writes is a CvmError("volume") naming the field. */
export function decodeOpenedState(text: string, where: string): OpenedVolume[] {
  return decodeStateVolumes(text, where, OPENED_STATE_VERSION, MAX_VOLUMES, (v, f, bad): OpenedVolume => {
    const { name, uuid, device, ...rest } = v;
    for (const k of Object.keys(rest)) bad(`${f}.${k}`, "is not a known key");
    if (typeof name !== "string" || !DM_NAME_PATTERN.test(name)) bad(`${f}.name`, "is not a device-mapper name");
    if (typeof uuid !== "string" || !LUKS_UUID.test(uuid)) bad(`${f}.uuid`, "is not a lower-case LUKS UUID");
    if (typeof device !== "string" || device.length === 0 || device.length > 4096)
      bad(`${f}.device`, "is not a device path");
    return { name: name as string, uuid: uuid as string, device: device as string };
  });
}

/** The recorded volumes; [] when the file does not exist (nothing opened in this boot). Strict otherwise. */
export function readOpenedState(file: string): OpenedVolume[] {
  return readStateFile(file, "the opened-volumes state", MAX_STATE_BYTES, decodeOpenedState);
}

/**
 * The leave-initrd outcome for the event record: "opened:<names>", "none-opened", or "unknown"
 * when the file cannot be read. Never throws: the marker must be extended whatever state the
 * host left in /run, since the extension (not the outcome text) is what locks the key away from
 * the switched-to root.
 */
export function readOpenedOutcome(file: string): { outcome: string; problem?: string } {
  try {
    const names = readOpenedState(file).map((v) => v.name);
    return { outcome: names.length ? `opened:${names.join(",")}` : "none-opened" };
  } catch (e) {
    return { outcome: "unknown", problem: errorMessage(e) };
  }
}

/** Replace the file atomically (write + rename), so a reader never sees half of it. */
export function writeOpenedState(file: string, volumes: OpenedVolume[]): void {
  writeFileAtomic(file, encodeOpenedState(volumes));
}
