// The LUKS2 token of type "cvm-unlock" (docs/UNLOCK.md "LUKS2 token"), written by `cvm-unlock bind`:
//
//   {"type":"cvm-unlock","keyslots":[],"cvm_unlock_token":1,
//    "kbs_endpoints":["https://kbs.example:8080"],"resource":"repo/type/tag","ca_sha256":"<64 hex>"}
//
// The header is host-controlled, so the token is only a *selector*: every endpoint, CA and
// resource it names must be allowed by the trusted config (unlock.luks_token.*). It can never
// switch TLS off, enable sample, or touch anything else.
import { sha256 } from "@noble/hashes/sha2.js";
import { hex } from "../../../platform/util/bytes.ts";
import { CvmError } from "../../../platform/util/errors.ts";
import { readCaFile } from "../ca-file.ts";
import { RESOURCE_PATH, SHA256_HEX, URL_PATTERN } from "../patterns.ts";
import type { Config } from "../schema.ts";
import type { ConfigLayer, JsonObject } from "../load.ts";
import type { Luks2Header } from "../../../platform/luks/luks2-header.ts";
import { guardLayer } from "./layer-guard.ts";

export const TOKEN_TYPE = "cvm-unlock";
export const TOKEN_VERSION = 1;
const MAX_ENDPOINTS = 16;

export interface CvmToken {
  endpoints: string[];
  resource: string;
  caSha256?: string;
  keyslots: string[];
}

function bad(id: string, problem: string): never {
  throw new CvmError("config", `LUKS2 token ${id} (type ${TOKEN_TYPE}): ${problem}`);
}

/** Validate a token object from the header (host input). */
export function parseCvmToken(id: string, raw: Record<string, unknown>): CvmToken {
  const known = ["type", "keyslots", "cvm_unlock_token", "kbs_endpoints", "resource", "ca_sha256"];
  for (const k of Object.keys(raw)) if (!known.includes(k)) bad(id, `unknown member ${JSON.stringify(k)}`);
  if (raw.cvm_unlock_token !== TOKEN_VERSION)
    bad(id, `version ${JSON.stringify(raw.cvm_unlock_token)} is not supported (expected ${TOKEN_VERSION})`);
  const eps = raw.kbs_endpoints;
  if (
    !Array.isArray(eps) ||
    eps.length === 0 ||
    eps.length > MAX_ENDPOINTS ||
    !eps.every((e) => typeof e === "string" && URL_PATTERN.test(e))
  )
    bad(id, `kbs_endpoints must be 1..${MAX_ENDPOINTS} http(s) URLs`);
  if (typeof raw.resource !== "string" || !RESOURCE_PATH.test(raw.resource)) bad(id, "resource must be REPO/TYPE/TAG");
  const tok: CvmToken = {
    endpoints: eps as string[],
    resource: raw.resource,
    keyslots: (raw.keyslots as string[]) ?? [],
  };
  if (raw.ca_sha256 !== undefined) {
    if (typeof raw.ca_sha256 !== "string" || !SHA256_HEX.test(raw.ca_sha256))
      bad(id, "ca_sha256 must be 64 hex digits");
    tok.caSha256 = raw.ca_sha256.toLowerCase();
  }
  return tok;
}

/** The JSON `cvm-unlock bind` imports. */
export function buildCvmToken(t: CvmToken): JsonObject {
  return {
    type: TOKEN_TYPE,
    keyslots: t.keyslots,
    cvm_unlock_token: TOKEN_VERSION,
    kbs_endpoints: t.endpoints,
    resource: t.resource,
    ...(t.caSha256 !== undefined ? { ca_sha256: t.caSha256 } : {}),
  };
}

/** The single cvm-unlock token of a header (two are ambiguous: refuse). */
export function findCvmToken(h: Luks2Header): { id: string; token: CvmToken } | undefined {
  const ours = [...h.tokens.entries()].filter(([, t]) => t.type === TOKEN_TYPE);
  if (ours.length > 1)
    throw new CvmError(
      "config",
      `the LUKS2 header holds ${ours.length} ${TOKEN_TYPE} tokens (${ours.map(([i]) => i).join(", ")}): refusing to choose`,
    );
  const hit = ours[0];
  return hit ? { id: hit[0], token: parseCvmToken(hit[0], hit[1].raw) } : undefined;
}

/** SHA-256 of the DER of the first certificate in a PEM bundle (what ca_sha256 pins). */
export function caFingerprint(pem: string): string {
  const m = /-----BEGIN CERTIFICATE-----([A-Za-z0-9+/=\s]+)-----END CERTIFICATE-----/.exec(pem);
  if (!m) throw new CvmError("config", "no PEM certificate found");
  return hex(sha256(Buffer.from(m[1]!.replace(/\s+/g, ""), "base64")));
}

export function resourceAllowed(resource: string, allowed: string[]): boolean {
  return allowed.some((a) =>
    a.endsWith("/*")
      ? resource.startsWith(a.slice(0, -1)) && !resource.slice(a.length - 1).includes("/")
      : resource === a,
  );
}

/** The config layer a token contributes, with its guard. */
export function tokenLayer(device: string, found: { id: string; token: CvmToken }, base: Config): ConfigLayer {
  const source = `LUKS2 token ${found.id} on ${device}`;
  const allow = base.unlock.luks_token;
  const kbs: JsonObject = { endpoints: found.token.endpoints };
  if (found.token.caSha256 !== undefined) {
    const match = allow.allowed_ca_files.find(
      (f) => caFingerprint(readCaFile(f, "unlock.luks_token.allowed_ca_files entry")) === found.token.caSha256,
    );
    if (!match)
      throw new CvmError(
        "config",
        `${source} may not set kbs.ca_sha256 to ${found.token.caSha256}: no CA in unlock.luks_token.allowed_ca_files has that fingerprint`,
      );
    kbs.ca_file = match;
  }
  return {
    source,
    data: { kbs, resource: found.token.resource },
    guard: guardLayer(source, ["kbs.endpoints", "kbs.ca_file", "resource"], (data, b) => {
      const a = b.unlock.luks_token;
      const d = data as { kbs?: { endpoints?: string[]; ca_file?: string }; resource?: string };
      for (const e of d.kbs?.endpoints ?? [])
        if (!a.allowed_endpoints.includes(e))
          throw new CvmError(
            "config",
            `${source} may not set kbs.endpoints to ${e}: not in unlock.luks_token.allowed_endpoints`,
          );
      if (d.kbs?.ca_file !== undefined && !a.allowed_ca_files.includes(d.kbs.ca_file))
        throw new CvmError(
          "config",
          `${source} may not set kbs.ca_file to ${d.kbs.ca_file}: not in unlock.luks_token.allowed_ca_files`,
        );
      if (d.resource !== undefined && !resourceAllowed(d.resource, a.allowed_resources))
        throw new CvmError(
          "config",
          `${source} may not set resource to ${d.resource}: not in unlock.luks_token.allowed_resources`,
        );
    }),
  };
}
