// Options shared by the commands that load configuration, and the translation of those flags into
// a config layer (the highest-precedence source; see agent/config/load.ts).
import * as fs from "node:fs";
import * as path from "node:path";
import { X509Certificate } from "node:crypto";
import { CvmError, errorMessage } from "../../platform/util/errors.ts";
import { pemCertificateBlocks } from "../../platform/util/pem.ts";
import { Deadline } from "../../platform/util/deadline.ts";
import type { Logger } from "../../platform/util/log.ts";
import type { PlatformEnv } from "../../platform/types.ts";
import {
  DEFAULT_CONFIG_PATH,
  mergeLayers,
  noteReplacedTrustAnchors,
  noteWideningFlags,
  readConfigFile,
  type ConfigLayer,
  type JsonObject,
  type LoadedConfig,
} from "../config/load.ts";
import type { Config } from "../config/schema.ts";
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

/** Turn tester flags into a config layer. Only flags actually given appear in it. */
export function flagLayer(args: ParsedArgs): ConfigLayer {
  const kbs: JsonObject = {};
  const platform: JsonObject = {};
  const data: JsonObject = {};
  const endpoints = optList(args, "kbs");
  if (endpoints.length) kbs.endpoints = endpoints;
  const ca = optString(args, "ca");
  if (ca !== undefined) kbs.ca_file = path.resolve(ca);
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

export function platformEnv(config: Config, args: ParsedArgs, deadline: Deadline, log: Logger): PlatformEnv {
  const root = path.resolve(optString(args, "platform-root") ?? "/");
  return {
    paths: { root, tsmReport: path.join(root, "sys/kernel/config/tsm/report") },
    tpm: { spec: config.platform.tpm, akHandle: parseInt(config.platform.tpm_ak_handle, 16) },
    azure: { metadataUrl: config.platform.azure_metadata_url, legacyTeeNames: config.platform.azure_legacy_tee_names },
    deadline,
    log,
  };
}

export function runContext(args: ParsedArgs, log: Logger, extraLayers: ConfigLayer[] = []): RunContext {
  const loaded = loadConfig(args, log, extraLayers);
  const deadline = new Deadline(loaded.config.deadline_s * 1000);
  return { loaded, config: loaded.config, deadline, env: platformEnv(loaded.config, args, deadline, log), log };
}

const MAX_CA_BYTES = 256 * 1024;
const MAX_CA_CERTS = 64;

/**
 * Every CERTIFICATE block of a CA bundle must parse as X.509, and there must be one: node treats an
 * empty `ca` as "not given" and would silently fall back to the system roots, and a bundle that
 * is not what the owner meant (`/etc/passwd`, a key) must fail at build time (`config --check`).
 */
export function checkCaBundle(pem: string, what: string): string {
  const blocks = pemCertificateBlocks(pem);
  if (blocks.length === 0)
    throw new CvmError("config", `${what} holds no PEM certificate`, {
      hint: "it must be the PEM CA bundle (-----BEGIN CERTIFICATE-----) that signs the KBS certificate",
    });
  if (blocks.length > MAX_CA_CERTS)
    throw new CvmError("config", `${what} holds more than ${MAX_CA_CERTS} certificates`);
  blocks.forEach((b, i) => {
    try {
      new X509Certificate(b);
    } catch (e) {
      throw new CvmError(
        "config",
        `${what}: certificate ${i + 1} of ${blocks.length} does not parse (${errorMessage(e)})`,
      );
    }
  });
  return pem;
}

/** The CA bundle from config, or undefined for the system roots. */
export function readCa(config: Config): string | undefined {
  if (config.kbs.ca_pem !== undefined) return checkCaBundle(config.kbs.ca_pem, "kbs.ca_pem");
  if (config.kbs.ca_file === undefined) return undefined;
  let pem: string;
  try {
    const st = fs.statSync(config.kbs.ca_file);
    if (!st.isFile() || st.size > MAX_CA_BYTES)
      throw new CvmError(
        "config",
        `CA file ${config.kbs.ca_file} is not a regular file of at most ${MAX_CA_BYTES} bytes`,
      );
    pem = fs.readFileSync(config.kbs.ca_file, "utf8");
  } catch (e) {
    if (e instanceof CvmError) throw e;
    throw new CvmError("config", `cannot read CA file ${config.kbs.ca_file}: ${(e as Error).message}`);
  }
  return checkCaBundle(pem, `CA file ${config.kbs.ca_file}`);
}
