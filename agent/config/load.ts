// Configuration sources, merged in a documented precedence (docs/CONFIG.md):
//   1. built-in defaults
//   2. the trusted file baked into the initramfs (/etc/cvm-unlock/config.json, or --config FILE)
//   3. host-influenced sources (kernel cmdline rd.cvm_unlock.*, LUKS2 token), each with a guard
//      that says which keys it may set (agent/unlock adds these)
//   4. command-line flags (tester's explicit choice; widening flags are logged as such)
// Every leaf keeps the name of the source that set it, for `config --explain`.
import { CvmError, errorMessage } from "../../platform/util/errors.ts";
import { fileText, readFileBounded, readFileIfPresent } from "../../platform/util/files.ts";
import type { Logger } from "../../platform/util/log.ts";
import { configSchema, type Config } from "./schema.ts";

export const DEFAULT_CONFIG_PATH = "/etc/cvm-unlock/config.json";
const MAX_CONFIG_BYTES = 1024 * 1024;

export type Json = null | boolean | number | string | Json[] | { [k: string]: Json };
export type JsonObject = { [k: string]: Json };

export interface ConfigLayer {
  /** Shown by `config --explain`, e.g. "file:/etc/cvm-unlock/config.json", "flag --kbs". */
  source: string;
  data: JsonObject;
  /**
   * For host-influenced layers: throws a config error when the layer tries to set something it
   * may not (e.g. a LUKS token enabling allow_sample). `base` is the config merged so far.
   */
  guard?: (data: JsonObject, base: Config) => void;
}

export interface LoadedConfig {
  config: Config;
  /** JSON path (dot notation) -> source of the value. Paths not listed are defaults. */
  provenance: Map<string, string>;
}

export function readConfigFile(path: string, mustExist: boolean): ConfigLayer | null {
  const limit = { what: "config file", max: MAX_CONFIG_BYTES, kind: "config", regularFile: true } as const;
  const bytes = mustExist ? readFileBounded(path, limit) : readFileIfPresent(path, limit);
  if (bytes === undefined) return null;
  const text = fileText(bytes);
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch (e) {
    throw new CvmError("config", `config file ${path} is not valid JSON: ${errorMessage(e)}`);
  }
  if (typeof data !== "object" || data === null || Array.isArray(data))
    throw new CvmError("config", `config file ${path}: top level must be a JSON object`);
  return { source: `file:${path}`, data: data as JsonObject };
}

function isObject(v: Json | undefined): v is JsonObject {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/** Deep merge; arrays and scalars replace. Records which source set each leaf. */
function mergeInto(target: JsonObject, src: JsonObject, source: string, prov: Map<string, string>, prefix = ""): void {
  for (const [k, v] of Object.entries(src)) {
    const path = prefix ? `${prefix}.${k}` : k;
    const cur = target[k];
    if (isObject(v) && isObject(cur)) mergeInto(cur, v, source, prov, path);
    else if (isObject(v)) {
      target[k] = {};
      mergeInto(target[k] as JsonObject, v, source, prov, path);
    } else {
      target[k] = structuredClone(v);
      for (const p of [...prov.keys()]) if (p.startsWith(path + ".") || p.startsWith(path + "[")) prov.delete(p);
      prov.set(path, source);
    }
  }
}

export function mergeLayers(layers: ConfigLayer[]): LoadedConfig {
  const merged: JsonObject = {};
  const provenance = new Map<string, string>();
  let config = configSchema.parse({}, "");
  for (const layer of layers) {
    layer.guard?.(layer.data, config);
    mergeInto(merged, layer.data, layer.source, provenance);
    try {
      config = configSchema.parse(merged, "");
    } catch (e) {
      if (e instanceof CvmError) throw new CvmError("config", `${e.message} (from ${layer.source})`);
      throw e;
    }
  }
  refuseAmbiguousCa(config, provenance);
  return { config, provenance };
}

/**
 * kbs.ca_pem and kbs.ca_file together are ambiguous (which one pins the KBS?): refuse rather than
 * let one silently win, so that e.g. a tester's --ca never looks used while the file's PEM is.
 */
function refuseAmbiguousCa(config: Config, provenance: Map<string, string>): void {
  if (config.kbs.ca_pem === undefined || config.kbs.ca_file === undefined) return;
  const from = (p: string) => provenance.get(p) ?? "defaults";
  throw new CvmError(
    "config",
    `kbs.ca_pem (from ${from("kbs.ca_pem")}) and kbs.ca_file (from ${from("kbs.ca_file")}) are both set: set only one`,
    {
      hint: "keep one CA source in the trusted config; a tester's --ca or a LUKS token's CA pin needs kbs.ca_file there, not kbs.ca_pem",
    },
  );
}

/** Log flags that widen what the trusted file allows; they are the tester's explicit choice. */
export function noteWideningFlags(loaded: LoadedConfig, log: Logger): void {
  const widening = ["kbs.insecure_http", "platform.allow_sample"];
  for (const path of widening) {
    const src = loaded.provenance.get(path);
    if (src?.startsWith("flag") && getPath(loaded.config, path) === true)
      log.warning(`${path} enabled by ${src}: insecure, tester's explicit choice; never use this in production`);
  }
}

/** Trust anchors a tester's flag may replace; doing so is logged like a widening flag. */
const TRUST_ANCHORS = ["kbs.endpoints", "kbs.ca_file"];

/** Log flags that replace a trust anchor an earlier (trusted) layer set: never a silent change. */
export function noteReplacedTrustAnchors(layers: ConfigLayer[], log: Logger): void {
  const flags = layers.at(-1);
  if (!flags || flags.source !== "flags") return;
  for (const anchor of TRUST_ANCHORS) {
    if (getPath(flags.data, anchor) === undefined) continue;
    const earlier = layers
      .slice(0, -1)
      .filter((l) => getPath(l.data, anchor) !== undefined)
      .map((l) => l.source);
    if (earlier.length) log.warning(`${anchor} from ${earlier.join(", ")} replaced by flags: tester's explicit choice`);
  }
}

function getPath(obj: unknown, path: string): unknown {
  let cur: unknown = obj;
  for (const part of path.split(".")) {
    if (typeof cur !== "object" || cur === null) return undefined;
    cur = (cur as Record<string, unknown>)[part];
  }
  return cur;
}
