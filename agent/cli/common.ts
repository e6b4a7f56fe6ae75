// Options shared by the commands that load configuration, and the translation of those flags into
// a config layer (the highest-precedence source; see agent/config/load.ts).
import * as fs from "node:fs";
import * as path from "node:path";
import { CvmError } from "../../platform/util/errors.ts";
import { Deadline } from "../../platform/util/deadline.ts";
import { silentLogger, type Logger } from "../../platform/util/log.ts";
import type { InitDataDocument } from "../init-data/document.ts";
import { initDataLayer } from "../init-data/layer.ts";
import { resolveInitData } from "../init-data/load.ts";
import type { PlatformEnv } from "../../platform/types.ts";
import {
  DEFAULT_CONFIG_PATH,
  mergeLayers,
  noteReplacedTrustAnchors,
  noteWideningFlags,
  readConfigFile,
  type ConfigLayer,
  type ConfigLoader,
  type JsonObject,
  type LoadedConfig,
} from "../config/load.ts";
import type { Config } from "../config/schema.ts";
import { DEFAULT_CRYPTTAB, DEFAULT_KEY_SOCKET } from "../unlock/crypttab.ts";
import { checkCaBundle, readCaFile } from "../config/ca-file.ts";
import { optBool, optList, optNumber, optString, type OptionSpec, type ParsedArgs } from "./args.ts";

export const configOptions: OptionSpec[] = [
  { name: "config", kind: "string", value: "FILE", help: `configuration file (default ${DEFAULT_CONFIG_PATH})` },
  { name: "kbs", kind: "list", value: "URL", help: "KBS endpoint, tried in order (replaces kbs.endpoints)" },
  {
    name: "ca",
    kind: "string",
    value: "FILE",
    help: "PEM CA bundle that signs the KBS certificate (replaces the system roots)",
  },
  { name: "resource", kind: "string", value: "REPO/TYPE/TAG", help: "KBS resource to fetch" },
  {
    name: "init-data",
    kind: "string",
    value: "FILE",
    help: "init-data TOML to bind into the evidence and send (instead of init_data.sources)",
  },
  {
    name: "tee",
    kind: "string",
    value: "NAME",
    help: "evidence source: auto, snp, tdx, tpm, az-snp-vtpm, az-tdx-vtpm, sample",
  },
  { name: "tpm", kind: "string", value: "SPEC", help: "TPM: /dev/tpmrm0 or swtpm:HOST:PORT" },
  { name: "allow-sample", kind: "bool", help: "permit the insecure sample TEE (testing only; logged)" },
  { name: "insecure-http", kind: "bool", help: "permit plain http:// KBS endpoints (testing only; logged)" },
  { name: "deadline", kind: "string", value: "SECONDS", help: "overall deadline for this run" },
  {
    name: "platform-root",
    kind: "string",
    value: "DIR",
    help: "test only: root of a stand-in /sys,/dev tree",
    hidden: true,
  },
  {
    name: "azure-metadata-url",
    kind: "string",
    value: "URL",
    help: "test only: Azure metadata service base URL",
    hidden: true,
  },
];

/** Mode B (serve-keys, verify-mapping, config --check): which crypttab, and which key file in it is ours. */
export const crypttabOptions: OptionSpec[] = [
  {
    name: "crypttab",
    kind: "string",
    value: "FILE",
    help: `the crypttab naming the volumes (default ${DEFAULT_CRYPTTAB})`,
  },
  {
    name: "socket",
    kind: "string",
    value: "PATH",
    help: `the key socket, as crypttab names it as key file (default ${DEFAULT_KEY_SOCKET})`,
  },
];

/** Turn tester flags into a config layer. Only flags actually given appear in it. */
export function flagLayer(args: ParsedArgs): ConfigLayer {
  const kbs: JsonObject = {};
  const platform: JsonObject = {};
  const data: JsonObject = {};
  const endpoints = optList(args, "kbs");
  if (endpoints.length) kbs.endpoints = endpoints;
  const ca = optString(args, "ca");
  if (ca !== undefined) kbs.ca_file = path.resolve(ca);
  const initData = optString(args, "init-data");
  if (initData !== undefined) kbs.init_data_file = path.resolve(initData);
  if (optBool(args, "insecure-http")) kbs.insecure_http = true;
  const resource = optString(args, "resource");
  if (resource !== undefined) data.resource = resource;
  const tee = optString(args, "tee");
  if (tee !== undefined) platform.tee = tee;
  const tpm = optString(args, "tpm");
  if (tpm !== undefined) platform.tpm = tpm;
  if (optBool(args, "allow-sample")) platform.allow_sample = true;
  const md = optString(args, "azure-metadata-url");
  if (md !== undefined) platform.azure_metadata_url = md;
  const deadline = optNumber(args, "deadline", 1, 3600);
  if (deadline !== undefined) data.deadline_s = deadline;
  if (Object.keys(kbs).length) data.kbs = kbs;
  if (Object.keys(platform).length) data.platform = platform;
  return { source: "flags", data };
}

export interface RunContext {
  loaded: LoadedConfig;
  config: Config;
  deadline: Deadline;
  env: PlatformEnv;
  log: Logger;
  /** This boot's init-data, read once: bound into the evidence and sent with it. */
  initData?: InitDataDocument | undefined;
  /** The boot unit's --udev-trigger-marker (agent/udev-settle.ts); undefined: coldplug has run. */
  udevTriggerMarker?: string | undefined;
}

/** Extra layers (kernel cmdline, LUKS token) come from the unlock feature. */
export function loadConfig(args: ParsedArgs, log: Logger, extraLayers: ConfigLayer[] = []): LoadedConfig {
  const explicit = optString(args, "config");
  const file = readConfigFile(explicit ?? DEFAULT_CONFIG_PATH, explicit !== undefined);
  const layers = [...(file ? [file] : []), ...extraLayers, flagLayer(args)];
  const loaded = mergeLayers(layers);
  noteWideningFlags(loaded, log);
  noteReplacedTrustAnchors(layers, log);
  return loaded;
}

/** A loader bound to this command line (for features that add layers, e.g. unlock). */
export function configLoader(args: ParsedArgs): ConfigLoader {
  return (log, extraLayers = []) => loadConfig(args, log, extraLayers);
}

/** The hidden tester flag --platform-root (stand-in /sys, /dev, /proc), absolute; "/" by default. */
export function platformRoot(args: ParsedArgs): string {
  return path.resolve(optString(args, "platform-root") ?? "/");
}

export function platformEnv(config: Config, root: string, deadline: Deadline, log: Logger): PlatformEnv {
  return {
    paths: { root, tsmReport: path.join(root, "sys/kernel/config/tsm/report") },
    tpm: { spec: config.platform.tpm, akHandle: parseInt(config.platform.tpm_ak_handle, 16) },
    azure: { metadataUrl: config.platform.azure_metadata_url, legacyTeeNames: config.platform.azure_legacy_tee_names },
    deadline,
    log,
  };
}

/**
 * The configuration with this boot's init-data: found through the channels the trusted config
 * enables, and a layer right above the trusted file when init-data may configure the image.
 */
export async function loadConfigWithInitData(
  load: ConfigLoader,
  log: Logger,
  root: string,
): Promise<{ loaded: LoadedConfig; initData: InitDataDocument | undefined; layers: ConfigLayer[] }> {
  const base = load(log);
  const initData = await resolveInitData(base.config, root, log);
  const layer = initData ? initDataLayer(initData, base.config, log) : null;
  if (!layer) return { loaded: base, initData, layers: [] };
  return { loaded: load(silentLogger, [layer]), initData, layers: [layer] };
}

/**
 * Configuration, deadline and platform environment for one run. Commands that attest read init-data;
 * the others (detect, measure at leave-initrd) must work whatever the host put there.
 */
export async function runContext(args: ParsedArgs, log: Logger, opts: { initData: boolean }): Promise<RunContext> {
  const { loaded, initData } = opts.initData
    ? await loadConfigWithInitData(configLoader(args), log, platformRoot(args))
    : { loaded: loadConfig(args, log), initData: undefined };
  const deadline = new Deadline(loaded.config.deadline_s * 1000);
  const env = platformEnv(loaded.config, platformRoot(args), deadline, log);
  return { loaded, config: loaded.config, deadline, env, log, initData };
}

/** The CA bundle from config, or undefined for the system roots. */
export function readCa(config: Config): string | undefined {
  if (config.kbs.ca_pem !== undefined) return checkCaBundle(config.kbs.ca_pem, "kbs.ca_pem");
  if (config.kbs.ca_file === undefined) return undefined;
  return readCaFile(
    config.kbs.ca_file,
    "CA file",
    "config",
    "kbs.ca_file (--ca) must be the PEM CA bundle that signs the KBS certificate",
  );
}
