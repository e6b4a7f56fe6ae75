// `cvm-unlock bind DEVICE`: write (or replace) the cvm-unlock LUKS2 token that names the KBS
// endpoints, the resource and the CA pin for this volume, via `cryptsetup token import` with the
// JSON on stdin; then read the header back and check the token is what we wrote.
import { CvmError } from "../../platform/util/errors.ts";
import { Deadline } from "../../platform/util/deadline.ts";
import { optInt, optList, optString } from "../cli/args.ts";
import type { Command } from "../cli/command.ts";
import { RESOURCE_PATH, SHA256_HEX, URL_PATTERN } from "../config/patterns.ts";
import { cryptsetupError, findCryptsetup, runCryptsetup } from "../unlock/cryptsetup.ts";
import { luks2DigestFingerprint } from "../unlock/key-document.ts";
import { readCaFile } from "../config/ca-file.ts";
import { buildCvmToken, caFingerprint, findCvmToken, type CvmToken } from "../config/layers/token.ts";
import { readLuks2Header } from "../../platform/luks/volume-io.ts";

export const bindCommand: Command = {
  name: "bind",
  usage: "bind DEVICE --kbs URL [--kbs URL...] --resource REPO/TYPE/TAG [--ca-sha256 HEX | --ca FILE] [--key-slot N]",
  description:
    "The token only selects among what the trusted config allows (unlock.luks_token.*); see docs/UNLOCK.md.\n" +
    "An existing cvm-unlock token is replaced.",
  options: [
    { name: "kbs", kind: "list", value: "URL", help: "KBS endpoint (repeatable, tried in order)" },
    { name: "resource", kind: "string", value: "REPO/TYPE/TAG", help: "KBS resource holding this volume's key" },
    {
      name: "ca-sha256",
      kind: "string",
      value: "HEX",
      help: "SHA-256 of the DER of the CA certificate the KBS must chain to",
    },
    {
      name: "ca",
      kind: "string",
      value: "FILE",
      help: "PEM CA file: its first certificate's fingerprint becomes ca_sha256",
    },
    { name: "key-slot", kind: "string", value: "N", help: "keyslot the KBS key opens (recorded in the token)" },
    {
      name: "cryptsetup",
      kind: "string",
      value: "PATH",
      help: "cryptsetup binary (default: found in the sbin directories)",
      hidden: true,
    },
  ],
  async run(args, io) {
    if (args.positionals.length !== 1) throw new CvmError("usage", "bind needs exactly one DEVICE");
    const device = args.positionals[0]!;
    const endpoints = optList(args, "kbs");
    if (endpoints.length === 0) throw new CvmError("usage", "bind needs at least one --kbs URL");
    for (const e of endpoints)
      if (!URL_PATTERN.test(e)) throw new CvmError("usage", `--kbs ${JSON.stringify(e)} is not an http(s) URL`);
    const resource = optString(args, "resource");
    if (resource === undefined || !RESOURCE_PATH.test(resource))
      throw new CvmError("usage", "bind needs --resource REPO/TYPE/TAG");
    let caSha256 = optString(args, "ca-sha256")?.toLowerCase();
    const caFile = optString(args, "ca");
    if (caSha256 !== undefined && caFile !== undefined)
      throw new CvmError("usage", "give --ca-sha256 or --ca, not both");
    if (caSha256 !== undefined && !SHA256_HEX.test(caSha256))
      throw new CvmError("usage", "--ca-sha256 must be 64 hex digits");
    if (caFile !== undefined) caSha256 = caFingerprint(readCaFile(caFile, "--ca", "usage"));
    const slot = optInt(args, "key-slot", 0, 31);
    const token: CvmToken = {
      endpoints,
      resource,
      keyslots: slot === undefined ? [] : [String(slot)],
      ...(caSha256 !== undefined ? { caSha256 } : {}),
    };

    const existing = findCvmToken(readLuks2Header(device));
    const bin = findCryptsetup(optString(args, "cryptsetup") ?? "cryptsetup");
    const deadline = new Deadline(60_000);
    try {
      const cmd = [
        "token",
        "import",
        "--json-file",
        "-",
        ...(existing ? ["--token-id", existing.id, "--token-replace"] : []),
        device,
      ];
      const r = await runCryptsetup(
        bin,
        cmd,
        new TextEncoder().encode(JSON.stringify(buildCvmToken(token))),
        deadline,
        "importing the token into",
      );
      if (r.code !== 0) throw cryptsetupError(r, device, "importing the token into");
    } finally {
      deadline.dispose();
    }
    const header = readLuks2Header(device);
    const back = findCvmToken(header);
    if (!back || JSON.stringify(buildCvmToken(back.token)) !== JSON.stringify(buildCvmToken(token)))
      throw new CvmError("unlock", `the token read back from ${device} differs from the one written`);
    io.stdout.write(
      `${device}: cvm-unlock token ${back.id} ${existing ? "replaced" : "added"} (resource ${resource}, ${endpoints.length} endpoint(s)${caSha256 ? `, CA ${caSha256.slice(0, 16)}…` : ""})\n`,
    );
    // What a key document for this volume should pin (docs/UNLOCK.md "Key resource").
    io.stdout.write(`pins: {"uuid":"${header.uuid}","luks2_digest_sha256":"${luks2DigestFingerprint(header)}"}\n`);
    return 0;
  },
};
