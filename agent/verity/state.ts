// /run/cvm-unlock/verity.json: the dm-verity volumes `unlock` opened and the root hash each was
// opened with (the KBS's, signature-checked when configured). Written by unlock, read strictly by
// verify-root, which accepts a verity root only with this hash in its live table.
// Format: {"version": 1, "volumes": [{"name", "roothash"}]} (docs/VERITY.md).
import * as path from "node:path";
import { writeFileAtomic } from "../../platform/util/files.ts";
import { decodeStateVolumes, readStateFile } from "../unlock/state-file.ts";
import type { Config } from "../config/schema.ts";
import { DM_NAME_PATTERN } from "../config/unlock-schema.ts";

export const VERITY_STATE_VERSION = 1;
const MAX_STATE_BYTES = 16 * 1024;
const MAX_VOLUMES = 4;

export interface OpenedVerity {
  name: string;
  /** Lowercase hex. */
  roothash: string;
}

export function verityStatePath(config: Config): string {
  return path.join(path.dirname(config.unlock.measure.record_path), "verity.json");
}

export function encodeVerityState(volumes: OpenedVerity[]): string {
  return JSON.stringify({ version: VERITY_STATE_VERSION, volumes }) + "\n";
}

export function decodeVerityState(text: string, where: string): OpenedVerity[] {
  return decodeStateVolumes(text, where, VERITY_STATE_VERSION, MAX_VOLUMES, (v, f, bad): OpenedVerity => {
    const { name, roothash, ...more } = v;
    for (const k of Object.keys(more)) bad(`${f}.${k}`, "is not a known key");
    if (typeof name !== "string" || !DM_NAME_PATTERN.test(name)) bad(`${f}.name`, "is not a device-mapper name");
    if (typeof roothash !== "string" || !/^[0-9a-f]{64,128}$/.test(roothash))
      bad(`${f}.roothash`, "is not a hex root hash");
    return { name: name as string, roothash: roothash as string };
  });
}

/** [] when absent (no verity volume in this boot); strict otherwise. */
export function readVerityState(file: string): OpenedVerity[] {
  return readStateFile(file, "the verity state", MAX_STATE_BYTES, decodeVerityState);
}

export function writeVerityState(file: string, volumes: OpenedVerity[]): void {
  writeFileAtomic(file, encodeVerityState(volumes));
}
