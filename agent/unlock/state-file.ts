// The state files unlock leaves in /run/cvm-unlock for verify-root (opened.json, verity.json):
// {"version": V, "volumes": [...]}, written atomically, read strictly. Every deviation is a
// CvmError("volume") naming the file and field: verify-root decides on these.
import { CvmError, errorMessage } from "../../platform/util/errors.ts";
import { readFileIfPresent } from "../../platform/util/files.ts";

export type Refuse = (field: string, problem: string) => never;

function refuser(where: string): Refuse {
  return (field, problem) => {
    throw new CvmError("volume", `${where}: '${field}' ${problem}`, {
      hint: "the file is written by `cvm-unlock unlock` only; remove it and unlock again",
    });
  };
}

/** The entries of a state document; `entry` checks one object (its keys, its fields). */
export function decodeStateVolumes<T>(
  text: string,
  where: string,
  version: number,
  maxVolumes: number,
  entry: (v: Record<string, unknown>, field: string, bad: Refuse) => T,
): T[] {
  const bad = refuser(where);
  let st: unknown;
  try {
    st = JSON.parse(text);
  } catch (e) {
    return bad("(root)", `is not JSON (${errorMessage(e)})`);
  }
  if (typeof st !== "object" || st === null || Array.isArray(st)) return bad("(root)", "is not an object");
  const o = st as Record<string, unknown>;
  for (const k of Object.keys(o)) if (k !== "version" && k !== "volumes") bad(k, "is not a known key");
  if (o.version !== version) bad("version", `is ${JSON.stringify(o.version)}, expected ${version}`);
  if (!Array.isArray(o.volumes)) return bad("volumes", "is not an array");
  if (o.volumes.length > maxVolumes) bad("volumes", `has more than ${maxVolumes} entries`);
  return o.volumes.map((v: unknown, i) => {
    const f = `volumes[${i}]`;
    if (typeof v !== "object" || v === null || Array.isArray(v)) return bad(f, "is not an object");
    return entry(v as Record<string, unknown>, f, bad);
  });
}

/** The decoded file; [] when it does not exist (nothing of the kind opened in this boot). */
export function readStateFile<T>(
  file: string,
  what: string,
  max: number,
  decode: (text: string, where: string) => T[],
): T[] {
  let bytes: Uint8Array | undefined;
  try {
    // regularFile: a FIFO or device put in its place must not block or feed the reader
    bytes = readFileIfPresent(file, { what, max, kind: "volume", regularFile: true });
  } catch (e) {
    throw new CvmError("volume", `cannot read ${file}: ${errorMessage(e)}`);
  }
  return bytes === undefined ? [] : decode(Buffer.from(bytes).toString("utf8"), file);
}
