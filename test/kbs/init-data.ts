// init-data as trustee's AS handles it (docs/spec/kbs-protocol.md §2.3): format must be "toml", the TOML's
// top-level `algorithm` must be sha256|sha384|sha512|sm3, digest = algorithm(body bytes as sent).
// Only the two top-level keys trustee needs are read; sm3 is not implemented here (rejected clearly).
import { sha256, sha384, sha512 } from "@noble/hashes/sha2.js";
import { utf8 } from "../../platform/util/bytes.ts";
import type { InitData } from "./messages.ts";

export interface CheckedInitData {
  body: string;
  algorithm: "sha256" | "sha384" | "sha512";
  /** The init-data digest verifiers compare with HOSTDATA / MRCONFIGID / PCR8. */
  digest: Uint8Array;
}

const HASHES = { sha256, sha384, sha512 } as const;

function topLevelString(toml: string, key: string): string | undefined {
  for (const line of toml.split(/\r?\n/)) {
    if (/^\s*\[/.test(line)) break; // first table header ends the top level
    const m = new RegExp(`^\\s*${key}\\s*=\\s*"([^"\\\\]*)"\\s*(?:#.*)?$`).exec(line);
    if (m) return m[1];
  }
  return undefined;
}

export function checkInitData(initData: InitData): CheckedInitData {
  if (initData.format !== "toml")
    throw new Error(`Unsupported initdata format: "${initData.format}" (trustee accepts only "toml")`);
  if (topLevelString(initData.body, "version") === undefined)
    throw new Error("init-data TOML: missing string `version`");
  const algorithm = topLevelString(initData.body, "algorithm");
  if (algorithm === undefined) throw new Error("init-data TOML: missing string `algorithm`");
  if (algorithm === "sm3")
    throw new Error("init-data TOML: algorithm sm3 is valid for trustee but not implemented by the test KBS");
  if (!(algorithm in HASHES))
    throw new Error(`init-data TOML: algorithm "${algorithm}" is not one of sha256, sha384, sha512, sm3`);
  const alg = algorithm as keyof typeof HASHES;
  return { body: initData.body, algorithm: alg, digest: HASHES[alg](utf8(initData.body)) };
}
