// /run/cvm-unlock/opened.json: which volumes `unlock` opened (dm name, LUKS UUID, device; never
// key material). `unlock` writes it, `verify-root` reads it strictly (it decides whether the boot
// may continue), `measure leave-initrd` reads it fail-safe (see readOpenedOutcome).
// Format: {"version": 1, "volumes": [{"name", "uuid", "device"}]} (docs/UNLOCK.md).
import * as fs from "node:fs";
import * as path from "node:path";
import { CvmError, errorMessage } from "../../platform/util/errors.ts";
import { readFileIfPresent } from "../../platform/util/files.ts";
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
  const o = st as Record<string, unknown>;
  for (const k of Object.keys(o)) if (k !== "version" && k !== "volumes") bad(k, "is not a known key");
  if (o.version !== OPENED_STATE_VERSION)
    bad("version", `is ${JSON.stringify(o.version)}, expected ${OPENED_STATE_VERSION}`);
  if (!Array.isArray(o.volumes)) return bad("volumes", "is not an array");
  if (o.volumes.length > MAX_VOLUMES) bad("volumes", `has more than ${MAX_VOLUMES} entries`);
  return o.volumes.map((v: unknown, i): OpenedVolume => {
    const f = `volumes[${i}]`;
    if (typeof v !== "object" || v === null || Array.isArray(v)) return bad(f, "is not an object");
    const { name, uuid, device, ...rest } = v as Record<string, unknown>;
    for (const k of Object.keys(rest)) bad(`${f}.${k}`, "is not a known key");
    if (typeof name !== "string" || !DM_NAME_PATTERN.test(name)) bad(`${f}.name`, "is not a device-mapper name");
    if (typeof uuid !== "string" || !LUKS_UUID.test(uuid)) bad(`${f}.uuid`, "is not a lower-case LUKS UUID");
    if (typeof device !== "string" || device.length === 0 || device.length > 4096)
      bad(`${f}.device`, "is not a device path");
    return { name: name as string, uuid: uuid as string, device: device as string };
  });
}

/**
 * The text of a state file the agent wrote in /run (opened.json, verified.json), or undefined when
 * it does not exist; unreadable or oversized is a `volume` error (these files decide the boot).
 */
export function readStateFile(file: string, what: string): string | undefined {
  let bytes: Uint8Array | undefined;
  try {
    bytes = readFileIfPresent(file, { what, max: MAX_STATE_BYTES, kind: "volume" });
  } catch (e) {
    throw new CvmError("volume", `cannot read ${file}: ${errorMessage(e)}`);
  }
  return bytes === undefined ? undefined : Buffer.from(bytes).toString("utf8");
}

/** Replace a state file atomically (write + rename), so a reader never sees half of it. */
export function writeStateFile(file: string, text: string): void {
  fs.mkdirSync(path.dirname(file), { recursive: true, mode: 0o755 });
  const tmp = `${file}.${process.pid}.tmp`;
  fs.writeFileSync(tmp, text, { mode: 0o644 });
  fs.renameSync(tmp, file);
}

/** The recorded volumes; [] when the file does not exist (nothing opened in this boot). Strict otherwise. */
export function readOpenedState(file: string): OpenedVolume[] {
  const text = readStateFile(file, "the opened-volumes state");
  return text === undefined ? [] : decodeOpenedState(text, file);
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

export function writeOpenedState(file: string, volumes: OpenedVolume[]): void {
  writeStateFile(file, encodeOpenedState(volumes));
}
