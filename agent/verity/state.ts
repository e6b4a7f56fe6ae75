// /run/cvm-unlock/verity.json: the dm-verity volumes `unlock` opened and the root hash each was
// opened with (the KBS's, signature-checked when configured). Written by unlock, read strictly by
// verify-root, which accepts a verity root only with this hash in its live table.
// Format: {"version": 1, "volumes": [{"name", "roothash"}]} (docs/VERITY.md).
import * as path from "node:path";
import { CvmError, errorMessage } from "../../platform/util/errors.ts";
import { readFileIfPresent, writeFileAtomic } from "../../platform/util/files.ts";
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
  const bad = (field: string, problem: string): never => {
    throw new CvmError("volume", `${where}: '${field}' ${problem}`, {
      hint: "the file is written by `cvm-unlock unlock` only; remove it and unlock again",
    });
  };
  let st: unknown;
  try {
    st = JSON.parse(text);
  } catch (e) {
    return bad("(root)", `is not JSON (${errorMessage(e)})`);
  }
  if (typeof st !== "object" || st === null || Array.isArray(st)) return bad("(root)", "is not an object");
  const { version, volumes, ...rest } = st as Record<string, unknown>;
  for (const k of Object.keys(rest)) bad(k, "is not a known key");
  if (version !== VERITY_STATE_VERSION)
    bad("version", `is ${JSON.stringify(version)}, expected ${VERITY_STATE_VERSION}`);
  if (!Array.isArray(volumes) || volumes.length > MAX_VOLUMES)
    return bad("volumes", `is not an array of at most ${MAX_VOLUMES}`);
  return volumes.map((v: unknown, i): OpenedVerity => {
    const f = `volumes[${i}]`;
    if (typeof v !== "object" || v === null || Array.isArray(v)) return bad(f, "is not an object");
    const { name, roothash, ...more } = v as Record<string, unknown>;
    for (const k of Object.keys(more)) bad(`${f}.${k}`, "is not a known key");
    if (typeof name !== "string" || !DM_NAME_PATTERN.test(name)) bad(`${f}.name`, "is not a device-mapper name");
    if (typeof roothash !== "string" || !/^[0-9a-f]{64,128}$/.test(roothash))
      bad(`${f}.roothash`, "is not a hex root hash");
    return { name: name as string, roothash: roothash as string };
  });
}

/** [] when absent (no verity volume in this boot); strict otherwise. */
export function readVerityState(file: string): OpenedVerity[] {
  let bytes: Uint8Array | undefined;
  try {
    bytes = readFileIfPresent(file, { what: "the verity state", max: MAX_STATE_BYTES, kind: "volume" });
  } catch (e) {
    throw new CvmError("volume", `cannot read ${file}: ${errorMessage(e)}`);
  }
  return bytes === undefined ? [] : decodeVerityState(Buffer.from(bytes).toString("utf8"), file);
}

export function writeVerityState(file: string, volumes: OpenedVerity[]): void {
  writeFileAtomic(file, encodeVerityState(volumes));
}
