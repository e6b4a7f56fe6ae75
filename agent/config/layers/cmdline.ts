// Kernel command line (rd.cvm_unlock.*) as a configuration layer. The cmdline is host-supplied
// unless it is measured (UKI), so it is read only when the trusted config sets
// unlock.trust_cmdline, parsed strictly (unknown rd.cvm_unlock.* keys and duplicates are errors),
// and its layer may only set the keys listed in CMDLINE_KEYS.
import * as path from "node:path";
import { CvmError } from "../../../platform/util/errors.ts";
import { fileText, readFileIfReadable } from "../../../platform/util/files.ts";
import type { ConfigLayer, JsonObject } from "../load.ts";
import type { Config } from "../schema.ts";
import { guardLayer } from "./layer-guard.ts";

const MAX_CMDLINE = 4096;
/** What we read of /proc/cmdline: bootconfig can add up to 32 KiB, and a long untrusted one is no error. */
const MAX_CMDLINE_FILE = 64 * 1024;
const PREFIX = "rd.cvm_unlock.";

/** rd.cvm_unlock.<key> -> what it sets. Volume keys apply to the first (or only) volume. */
export const CMDLINE_KEYS = [
  "uuid",
  "partlabel",
  "gpt_auto_root",
  "name",
  "kbs",
  "resource",
  "device_timeout",
] as const;
type CmdlineKey = (typeof CMDLINE_KEYS)[number];

/** Split like the kernel's next_arg(): whitespace-separated, double quotes group. */
export function splitCmdline(text: string): string[] {
  if (text.length > MAX_CMDLINE)
    throw new CvmError("config", `kernel command line is longer than ${MAX_CMDLINE} bytes`);
  if (/[\u0000-\u0008\u000b-\u001f\u007f]/.test(text.replace(/\n$/, "")))
    throw new CvmError("config", "kernel command line contains control characters");
  const out: string[] = [];
  let cur = "";
  let inQuote = false;
  let has = false;
  for (const ch of text) {
    if (ch === '"') {
      inQuote = !inQuote;
      has = true;
    } else if (!inQuote && /\s/.test(ch)) {
      if (has) out.push(cur);
      cur = "";
      has = false;
    } else {
      cur += ch;
      has = true;
    }
  }
  if (inQuote) throw new CvmError("config", "kernel command line has an unterminated quote");
  if (has) out.push(cur);
  return out;
}

/** Our parameters only; strict about names, duplicates and values. */
export function parseCvmParams(text: string): Map<CmdlineKey, string> {
  const params = new Map<CmdlineKey, string>();
  for (const tok of splitCmdline(text)) {
    if (!tok.startsWith(PREFIX)) continue;
    const eq = tok.indexOf("=");
    const key = tok.slice(PREFIX.length, eq === -1 ? undefined : eq);
    if (!(CMDLINE_KEYS as readonly string[]).includes(key))
      throw new CvmError(
        "config",
        `unknown kernel parameter ${PREFIX}${key} (known: ${CMDLINE_KEYS.map((k) => PREFIX + k).join(", ")})`,
      );
    if (eq === -1) throw new CvmError("config", `kernel parameter ${PREFIX}${key} needs a value`);
    if (params.has(key as CmdlineKey)) throw new CvmError("config", `kernel parameter ${PREFIX}${key} is given twice`);
    params.set(key as CmdlineKey, tok.slice(eq + 1));
  }
  return params;
}

function parseBool(key: string, v: string): boolean {
  if (["1", "yes", "true"].includes(v)) return true;
  if (["0", "no", "false"].includes(v)) return false;
  throw new CvmError("config", `kernel parameter ${PREFIX}${key}=${v}: expected 1/0, yes/no or true/false`);
}

/** Build the layer data. Volume keys replace the first volume's selector, keeping its other fields. */
export function cmdlineLayerData(params: Map<CmdlineKey, string>, base: Config): JsonObject {
  const data: JsonObject = {};
  const vol: JsonObject = {};
  for (const [k, v] of params) {
    switch (k) {
      case "uuid":
      case "partlabel":
      case "name":
        vol[k] = v;
        break;
      case "gpt_auto_root":
        vol.gpt_auto_root = parseBool(k, v);
        break;
      case "kbs":
        data.kbs = { endpoints: v.split(",").filter((s) => s !== "") };
        break;
      case "resource":
        data.resource = v;
        break;
      case "device_timeout": {
        if (!/^\d{1,4}$/.test(v))
          throw new CvmError("config", `kernel parameter ${PREFIX}device_timeout=${v}: expected whole seconds`);
        data.unlock = { device_timeout_s: Number(v) };
        break;
      }
    }
  }
  if (Object.keys(vol).length) {
    const first = (base.unlock.volumes[0] ?? {}) as JsonObject;
    // A new selector replaces the old one entirely (uuid and partlabel must not combine by accident).
    const { uuid: _u, partlabel: _p, gpt_auto_root: _g, device: _d, ...kept } = first;
    const merged: JsonObject = { ...kept, ...vol };
    for (const [k, v] of Object.entries(merged)) if (v === undefined) delete merged[k];
    data.unlock = {
      ...((data.unlock as JsonObject) ?? {}),
      volumes: [merged, ...(base.unlock.volumes.slice(1) as unknown as JsonObject[])],
    };
  }
  return data;
}

/** The cmdline layer, or null when the cmdline is not trusted or carries nothing for us. */
export function cmdlineLayer(root: string, base: Config, log: { warning(m: string): void }): ConfigLayer | null {
  const file = path.join(root, "proc/cmdline");
  const bytes = readFileIfReadable(file, { what: "kernel command line", max: MAX_CMDLINE_FILE, kind: "config" });
  if (bytes === undefined) return null;
  const text = fileText(bytes);
  if (!base.unlock.trust_cmdline) {
    if (text.includes(PREFIX))
      log.warning(
        `ignoring ${PREFIX}* on the kernel command line: unlock.trust_cmdline is not set in the trusted config`,
      );
    return null;
  }
  const params = parseCvmParams(text);
  if (params.size === 0) return null;
  const source = "kernel cmdline";
  return {
    source,
    data: cmdlineLayerData(params, base),
    guard: guardLayer(source, ["kbs.endpoints", "resource", "unlock.device_timeout_s", "unlock.volumes"], (data, b) => {
      // Volume entries may only change their selector and name: pins, device, resource stay as trusted.
      const vols = ((data.unlock as JsonObject | undefined)?.volumes ?? []) as JsonObject[];
      vols.forEach((v, i) => {
        const was = (b.unlock.volumes[i] ?? {}) as Record<string, unknown>;
        for (const k of ["pins", "device", "resource"])
          if (JSON.stringify(v[k]) !== JSON.stringify(was[k]))
            throw new CvmError("config", `${source} may not set unlock.volumes[${i}].${k}`);
      });
    }),
  };
}
