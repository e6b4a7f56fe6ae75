// What `bind` will do, decided from the command line before anything changes: the token, how
// the KBS side gets its value (admin upload with which credentials, or --key-out-fd), pins,
// keyslots to wipe, the resource policy. Every usage error surfaces here.
import * as fs from "node:fs";
import { isatty } from "node:tty";
import { CvmError, errorMessage } from "../../platform/util/errors.ts";
import type { Logger } from "../../platform/util/log.ts";
import { optBool, optInt, optList, optString, type OptionSpec, type ParsedArgs } from "../cli/args.ts";
import { readCaFile } from "../config/ca-file.ts";
import { readOptionFile } from "../cli/option-file.ts";
import { RESOURCE_PATH, SHA256_HEX, URL_PATTERN } from "../config/patterns.ts";
import { caFingerprint, type CvmToken } from "../config/layers/token.ts";
import { readAdminTokenFile, signAdminTokenFromFile } from "./admin-token.ts";
import { MAX_KEYSLOTS } from "./enroll.ts";
import { readPcrValues } from "./pcr-values.ts";
import { buildResourcePolicy, parsePolicyTemplate } from "./policy-template.ts";
import { parsePinKinds } from "./resource-value.ts";

const MAX_POLICY_FILE_BYTES = 256 * 1024;

export interface Plan {
  device: string;
  token: CvmToken;
  caPem: string | undefined;
  caFile: string | undefined;
  adminUrl: string;
  /** undefined = anonymous (InsecureAllowAll KBS); "fd" = no upload, write to keyOutFd */
  credentials: { token: string | undefined } | "fd";
  keyOutFd: number | undefined;
  pins: ReturnType<typeof parsePinKinds>;
  wipe: string[] | "all-but-new";
  policy: string | undefined;
  insecureHttp: boolean;
}

export function tokenFromArgs(args: ParsedArgs): { token: CvmToken; caPem: string | undefined } {
  const endpoints = optList(args, "kbs");
  if (endpoints.length === 0) throw new CvmError("usage", "bind needs at least one --kbs URL");
  for (const e of endpoints)
    if (!URL_PATTERN.test(e)) throw new CvmError("usage", `--kbs ${JSON.stringify(e)} is not an http(s) URL`);
  const resource = optString(args, "resource");
  if (resource === undefined || !RESOURCE_PATH.test(resource))
    throw new CvmError("usage", "bind needs --resource REPO/TYPE/TAG");
  let caSha256 = optString(args, "ca-sha256")?.toLowerCase();
  const caFile = optString(args, "ca");
  if (caSha256 !== undefined && caFile !== undefined) throw new CvmError("usage", "give --ca-sha256 or --ca, not both");
  if (caSha256 !== undefined && !SHA256_HEX.test(caSha256))
    throw new CvmError("usage", "--ca-sha256 must be 64 hex digits");
  let caPem: string | undefined;
  if (caFile !== undefined) {
    try {
      caPem = readCaFile(caFile, "--ca");
      caSha256 = caFingerprint(caPem);
    } catch (e) {
      throw new CvmError("usage", `--ca ${caFile}: ${errorMessage(e)}`);
    }
  }
  return { token: { endpoints, resource, keyslots: [], ...(caSha256 !== undefined ? { caSha256 } : {}) }, caPem };
}

export function planFromArgs(
  args: ParsedArgs,
  device: string,
  token: CvmToken,
  caPem: string | undefined,
  slots: string[],
  log: Logger,
): Plan {
  if (optString(args, "key-slot") !== undefined)
    throw new CvmError("usage", "--key-slot only goes with --token-only (bind picks the new keyslot itself)");
  if (optString(args, "ca-sha256") !== undefined && optString(args, "key-out-fd") === undefined)
    throw new CvmError(
      "usage",
      "--ca-sha256 only goes with --token-only or --key-out-fd: give --ca FILE, which also pins the upload",
    );
  const adminKey = optString(args, "admin-key");
  const adminTokenFile = optString(args, "admin-token-file");
  const anonymous = optBool(args, "admin-anonymous");
  const keyOutFd = optInt(args, "key-out-fd", 0, 1_000_000);
  const given = [adminKey, adminTokenFile, anonymous || undefined, keyOutFd].filter((x) => x !== undefined).length;
  if (given !== 1)
    throw new CvmError(
      "usage",
      "bind needs exactly one of --admin-key, --admin-token-file, --admin-anonymous, --key-out-fd",
      {
        hint: "the admin options upload the key to the KBS; --key-out-fd N hands it to you to upload with another tool",
      },
    );
  let credentials: Plan["credentials"];
  if (keyOutFd !== undefined) {
    checkSecretFd(keyOutFd);
    credentials = "fd";
  } else credentials = { token: adminTokenFromArgs(args) };

  const adminUrl = optString(args, "admin-url") ?? token.endpoints[0]!;
  if (!URL_PATTERN.test(adminUrl))
    throw new CvmError("usage", `--admin-url ${JSON.stringify(adminUrl)} is not an http(s) URL`);
  const insecureHttp = optBool(args, "insecure-http");
  if (insecureHttp) log.warning("--insecure-http: the admin API may be reached over plain http:// (testing only)");
  if (credentials !== "fd" && adminUrl.startsWith("https:") && caPem === undefined)
    log.warning(`no --ca: the KBS certificate of ${adminUrl} is checked against the system's public roots`);

  const wipeArgs = optList(args, "wipe-slot");
  let wipe: Plan["wipe"] = [];
  if (wipeArgs.includes("all-but-new")) {
    if (wipeArgs.length !== 1)
      throw new CvmError("usage", "--wipe-slot all-but-new cannot be combined with slot numbers");
    wipe = "all-but-new";
  } else
    for (const w of wipeArgs) {
      if (!/^\d{1,2}$/.test(w) || !slots.includes(String(Number(w))))
        throw new CvmError(
          "usage",
          `--wipe-slot ${JSON.stringify(w)}: ${device} has no such keyslot (it has ${slots.join(", ") || "none"})`,
        );
      if (!wipe.includes(String(Number(w)))) wipe.push(String(Number(w)));
    }
  if (slots.length >= MAX_KEYSLOTS)
    throw new CvmError("volume", `${device} has no free keyslot (all ${MAX_KEYSLOTS} in use)`);

  return {
    device,
    token,
    caPem,
    caFile: optString(args, "ca"),
    adminUrl,
    credentials,
    keyOutFd,
    pins: parsePinKinds(optList(args, "pin")),
    wipe,
    policy: policyFromArgs(args, token.resource),
    insecureHttp,
  };
}

/** How `bind` and `ssh-identity` authenticate to trustee's admin API. */
export const ADMIN_OPTIONS: OptionSpec[] = [
  {
    name: "admin-key",
    kind: "string",
    value: "FILE",
    help: "Ed25519 private key (PEM) to sign a short-lived admin JWT",
  },
  { name: "admin-token-file", kind: "string", value: "FILE", help: "admin JWT to send as Authorization: Bearer" },
  {
    name: "admin-anonymous",
    kind: "bool",
    help: "send admin requests without a token (KBS in InsecureAllowAll mode)",
  },
  { name: "admin-role", kind: "string", value: "ROLE", help: 'role claim of the signed admin JWT (default "admin")' },
  { name: "admin-issuer", kind: "string", value: "ISS", help: "iss claim of the signed admin JWT" },
  { name: "admin-audience", kind: "string", value: "AUD", help: "aud claim of the signed admin JWT" },
];

/**
 * The admin token of --admin-key (signed now) or --admin-token-file; undefined for
 * --admin-anonymous (the caller checked that exactly one credential option was given).
 */
export function adminTokenFromArgs(args: ParsedArgs): string | undefined {
  const adminKey = optString(args, "admin-key");
  for (const o of ["admin-role", "admin-issuer", "admin-audience"])
    if (optString(args, o) !== undefined && adminKey === undefined)
      throw new CvmError("usage", `--${o} only goes with --admin-key (it is a claim of the token cvm-unlock signs)`);
  if (adminKey !== undefined)
    return signAdminTokenFromFile(adminKey, {
      role: optString(args, "admin-role") ?? "admin",
      ...(optString(args, "admin-issuer") !== undefined ? { issuer: optString(args, "admin-issuer")! } : {}),
      ...(optString(args, "admin-audience") !== undefined ? { audience: optString(args, "admin-audience")! } : {}),
    });
  const file = optString(args, "admin-token-file");
  return file !== undefined ? readAdminTokenFile(file) : undefined;
}

function policyFromArgs(args: ParsedArgs, resource: string): string | undefined {
  const templates = optList(args, "policy").map(parsePolicyTemplate);
  const file = optString(args, "resource-policy");
  if (file !== undefined && templates.length > 0)
    throw new CvmError("usage", "give --policy templates or --resource-policy FILE, not both");
  if (file !== undefined) return readOptionFile(file, MAX_POLICY_FILE_BYTES, "--resource-policy").toString("utf8");
  if (templates.length === 0) {
    if (optString(args, "pcr-values") !== undefined)
      throw new CvmError("usage", "--pcr-values only goes with --policy tpm-pcrs=...");
    return undefined;
  }
  const pcrFile = optString(args, "pcr-values");
  return buildResourcePolicy(resource, templates, pcrFile !== undefined ? readPcrValues(pcrFile) : undefined);
}

/** Where the key may go without an upload: an open descriptor that is neither stderr nor a terminal. */
function checkSecretFd(fd: number): void {
  try {
    fs.fstatSync(fd);
  } catch {
    throw new CvmError("usage", `--key-out-fd ${fd} is not an open file descriptor`);
  }
  if (fd === 2)
    throw new CvmError("usage", "refusing to write a key to file descriptor 2: that is stderr, where the logs go");
  if (isatty(fd)) throw new CvmError("usage", `refusing to write a key to a terminal (--key-out-fd ${fd})`);
}
