// init-data: the per-VM document whose digest the platform binds into the evidence (SNP HOST_DATA,
// TDX MRCONFIGID, vTPM PCR 8) and that trustee verifies (docs/spec/kbs-protocol.md §2.3). Its
// bytes arrive through host-controlled channels, so this module parses them with bounds and
// types, and computes the digest over the text exactly as it will be sent.
//
// Shape (trustee's Initdata): top-level `version` (string), `algorithm` (sha256|sha384|sha512),
// `[data]` of strings. Inside `[data]` we read the confidential-containers keys `aa.toml`
// (`[token_configs.kbs] url`, `cert`) and `cdh.toml` (`[kbc] url`, `kbs_cert`), and our own
// `cvm-unlock.toml` or `cvm-unlock.json`; any other key is accepted and ignored.
import { sha256, sha384, sha512 } from "@noble/hashes/sha2.js";
import { parse as parseToml } from "smol-toml";
import { hex, utf8 } from "../../platform/util/bytes.ts";
import { CvmError, errorMessage } from "../../platform/util/errors.ts";
import type { JsonObject } from "../config/load.ts";

export const MAX_INIT_DATA_BYTES = 64 * 1024;
/** Nesting in an init-data TOML; peer-pods documents use two levels. */
const MAX_TOML_DEPTH = 8;
const HASHES = { sha256, sha384, sha512 } as const;
export type InitDataAlgorithm = keyof typeof HASHES;

export interface InitDataDocument {
  /** The TOML text, sent verbatim as `"init-data":{"format":"toml","body":...}`. */
  body: string;
  algorithm: InitDataAlgorithm;
  /** algorithm(body bytes): what HOST_DATA / MRCONFIGID / PCR 8 must carry. */
  digest: Uint8Array;
  /** Where it came from, e.g. "smbios", "fw_cfg", "file:/path" (for logs and config --explain). */
  origin: string;
  data: Record<string, string>;
}

function fail(origin: string, what: string): never {
  throw new CvmError("config", `init-data from ${origin}: ${what}`, {
    hint: 'init-data is trustee\'s TOML: version = "0.1.0", algorithm = "sha256", [data] of strings (docs/CONFIG.md)',
  });
}

function tomlTable(text: string, origin: string, what: string): Record<string, unknown> {
  try {
    return parseToml(text, { maxDepth: MAX_TOML_DEPTH }) as Record<string, unknown>;
  } catch (e) {
    fail(origin, `${what} is not valid TOML: ${errorMessage(e).split("\n")[0]}`);
  }
}

export function parseInitData(bytes: Uint8Array, origin: string): InitDataDocument {
  if (bytes.length > MAX_INIT_DATA_BYTES) fail(origin, `${bytes.length} bytes is more than ${MAX_INIT_DATA_BYTES}`);
  let body: string;
  try {
    body = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true }).decode(bytes);
  } catch {
    fail(origin, "is not UTF-8 text");
  }
  const doc = tomlTable(body, origin, "the document");
  if (typeof doc.version !== "string") fail(origin, "`version` must be a string");
  const algorithm = doc.algorithm;
  if (typeof algorithm !== "string" || !(algorithm in HASHES))
    fail(origin, `\`algorithm\` must be one of ${Object.keys(HASHES).join(", ")}, not ${JSON.stringify(algorithm)}`);
  const data: Record<string, string> = {};
  if (doc.data !== undefined) {
    if (typeof doc.data !== "object" || doc.data === null || Array.isArray(doc.data))
      fail(origin, "`data` must be a table");
    for (const [k, v] of Object.entries(doc.data)) {
      if (typeof v !== "string") fail(origin, `data.${JSON.stringify(k)} must be a string`);
      data[k] = v;
    }
  }
  const alg = algorithm as InitDataAlgorithm;
  return { body, algorithm: alg, digest: HASHES[alg](utf8(body)), origin, data };
}

export function describeInitData(d: InitDataDocument): string {
  return `${d.algorithm}:${hex(d.digest)}`;
}

/** The settings init-data carries for us: the KBS of aa.toml/cdh.toml and our own configuration. */
export interface InitDataSettings {
  kbsUrl?: string;
  kbsCertPem?: string;
  config?: JsonObject;
}

function nestedString(t: Record<string, unknown>, keys: string[]): string | undefined {
  let cur: unknown = t;
  for (const k of keys) {
    if (typeof cur !== "object" || cur === null) return undefined;
    cur = (cur as Record<string, unknown>)[k];
  }
  return typeof cur === "string" ? cur : undefined;
}

function agreeing(origin: string, what: string, a: string | undefined, b: string | undefined): string | undefined {
  if (a !== undefined && b !== undefined && a.trim() !== b.trim())
    fail(origin, `aa.toml and cdh.toml name different ${what}s: refusing to choose`);
  return a ?? b;
}

export function initDataSettings(d: InitDataDocument): InitDataSettings {
  const aa = d.data["aa.toml"] !== undefined ? tomlTable(d.data["aa.toml"], d.origin, 'data."aa.toml"') : {};
  const cdh = d.data["cdh.toml"] !== undefined ? tomlTable(d.data["cdh.toml"], d.origin, 'data."cdh.toml"') : {};
  const kbsUrl = agreeing(
    d.origin,
    "KBS URL",
    nestedString(aa, ["token_configs", "kbs", "url"]),
    nestedString(cdh, ["kbc", "url"]),
  );
  const kbsCertPem = agreeing(
    d.origin,
    "KBS certificate",
    nestedString(aa, ["token_configs", "kbs", "cert"]),
    nestedString(cdh, ["kbc", "kbs_cert"]),
  );
  const ownToml = d.data["cvm-unlock.toml"];
  const ownJson = d.data["cvm-unlock.json"];
  if (ownToml !== undefined && ownJson !== undefined)
    fail(d.origin, "carries both cvm-unlock.toml and cvm-unlock.json: keep one");
  let config: JsonObject | undefined;
  if (ownToml !== undefined) config = tomlTable(ownToml, d.origin, 'data."cvm-unlock.toml"') as JsonObject;
  else if (ownJson !== undefined) {
    try {
      config = JSON.parse(ownJson) as JsonObject;
    } catch (e) {
      fail(d.origin, `data."cvm-unlock.json" is not valid JSON: ${errorMessage(e)}`);
    }
    if (typeof config !== "object" || config === null || Array.isArray(config))
      fail(d.origin, 'data."cvm-unlock.json" must be a JSON object');
  }
  return {
    ...(kbsUrl !== undefined && kbsUrl !== "" ? { kbsUrl } : {}),
    ...(kbsCertPem !== undefined && kbsCertPem.trim() !== "" ? { kbsCertPem } : {}),
    ...(config !== undefined ? { config } : {}),
  };
}
