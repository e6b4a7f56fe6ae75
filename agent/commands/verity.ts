// `cvm-unlock verity format DATA HASH`: on the image owner's machine, build the dm-verity hash tree
// with `veritysetup format` (image files work: no device-mapper needed), optionally sign the root
// hash with openssl (PKCS#7, detached, the form `veritysetup --root-hash-signature` takes), check
// that signature with the agent's own verifier, and print the KBS resource (docs/VERITY.md).
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import { CvmError } from "../../platform/util/errors.ts";
import { fileText, readFileBounded } from "../../platform/util/files.ts";
import { optList, optString } from "../cli/args.ts";
import type { Command } from "../cli/command.ts";
import { findCryptsetup } from "../unlock/cryptsetup.ts";
import { veritysetupOptions } from "../verity/open.ts";
import { MAX_SIGNATURE_DER } from "../verity/pkcs7.ts";
import {
  encodeVerityResource,
  HASH_HEX_CHARS,
  parseVerityResource,
  type VerityHashAlg,
  type VerityVolume,
} from "../verity/resource.ts";
import { checkRootHashSignature, signerCertificates } from "../verity/signature.ts";

const TOOL_TIMEOUT_MS = 30 * 60_000; // veritysetup hashes the whole image

/** "Root hash:  <hex>" from veritysetup format's report. */
export function rootHashFromReport(stdout: string, alg: VerityHashAlg): string {
  const m = /^Root hash:\s+([0-9a-fA-F]+)\s*$/m.exec(stdout);
  if (!m || m[1]!.length !== HASH_HEX_CHARS[alg])
    throw new CvmError("unlock", `veritysetup format printed no ${alg} root hash:\n${stdout.slice(0, 1000)}`);
  return m[1]!.toLowerCase();
}

/** Sign the ASCII hex root hash with openssl: DER, detached, no certificates, no signed attributes. */
function sign(roothash: string, key: string, cert: string): Uint8Array {
  const r = spawnSync(
    "openssl",
    ["smime", "-sign", "-binary", "-noattr", "-nocerts", "-outform", "der", "-signer", cert, "-inkey", key],
    { input: roothash, maxBuffer: MAX_SIGNATURE_DER, timeout: 60_000 },
  );
  if (r.error || r.status !== 0)
    throw new CvmError(
      "unlock",
      `openssl smime -sign failed: ${r.error?.message ?? r.stderr.toString().slice(0, 500)}`,
      {
        hint: "check --sign-key (PEM private key) and --sign-cert (its certificate)",
      },
    );
  return new Uint8Array(r.stdout);
}

export const verityCommand: Command = {
  name: "verity",
  usage:
    "verity format DATA HASH [--name root] [--hash sha256|sha384|sha512] [--data PARTLABEL=..|PARTUUID=..]\n" +
    "     [--hash-device PARTLABEL=..|PARTUUID=..] [--option OPT]... [--sign-key KEY.pem --sign-cert CERT.pem] [--out FILE]",
  description:
    "Runs veritysetup format DATA HASH (files or devices) and prints the KBS resource {v:1, volumes:[...]}.\n" +
    "Without --data/--hash-device the guest finds the partitions as the Discoverable Partitions\n" +
    "Specification derives them from the root hash: set those partition UUIDs when you write the disk.\n" +
    "OPT: panic-on-corruption, restart-on-corruption, data-block-size=N, hash-block-size=N, salt=HEX,\n" +
    "format=0|1, superblock=false, hash-offset=N, uuid=UUID (docs/VERITY.md).",
  options: [
    { name: "name", kind: "string", value: "NAME", help: "device-mapper name (default root: /dev/mapper/root)" },
    { name: "hash", kind: "string", value: "ALG", help: "hash algorithm: sha256 (default), sha384, sha512" },
    { name: "data", kind: "string", value: "REF", help: "how the guest finds the data partition (default: derived)" },
    {
      name: "hash-device",
      kind: "string",
      value: "REF",
      help: "how the guest finds the hash partition (default: derived)",
    },
    { name: "option", kind: "list", value: "OPT", help: "dm-verity option (repeatable; see above)" },
    { name: "sign-key", kind: "string", value: "FILE", help: "PEM private key that signs the root hash" },
    {
      name: "sign-cert",
      kind: "string",
      value: "FILE",
      help: "its certificate (what the guest's verity.signer_cert holds)",
    },
    { name: "out", kind: "string", value: "FILE", help: "write the resource here instead of stdout" },
  ],
  async run(args, io) {
    const [sub, data, hash, ...rest] = args.positionals;
    if (sub !== "format" || data === undefined || hash === undefined || rest.length)
      throw new CvmError("usage", "usage: verity format DATA HASH [options]");
    const alg = (optString(args, "hash") ?? "sha256") as VerityHashAlg;
    if (!Object.hasOwn(HASH_HEX_CHARS, alg)) throw new CvmError("usage", "--hash must be sha256, sha384 or sha512");
    const key = optString(args, "sign-key");
    const cert = optString(args, "sign-cert");
    if ((key === undefined) !== (cert === undefined))
      throw new CvmError("usage", "--sign-key and --sign-cert go together");
    // Validate everything the guest will validate before hashing a whole image: a placeholder hash
    // of the right length stands in for the one veritysetup will compute.
    const describe = (roothash: string, signature?: Uint8Array) =>
      JSON.stringify({
        v: 1,
        volumes: [
          {
            name: optString(args, "name") ?? "root",
            roothash,
            hash_alg: alg,
            ...(optString(args, "data") !== undefined ? { data: optString(args, "data") } : {}),
            ...(optString(args, "hash-device") !== undefined ? { hash: optString(args, "hash-device") } : {}),
            options: optList(args, "option"),
            ...(signature ? { signature_p7s_b64: Buffer.from(signature).toString("base64") } : {}),
          },
        ],
      });
    const draft = draftVolume(describe("1".repeat(HASH_HEX_CHARS[alg])));
    const signers =
      cert !== undefined
        ? signerCertificates(
            fileText(readFileBounded(cert, { what: "--sign-cert", max: 64 * 1024, kind: "usage" })),
            cert,
          )
        : undefined;

    const veritysetup = findCryptsetup("veritysetup", "veritysetup");
    const formatArgs = [
      "format",
      data,
      hash,
      `--hash=${alg}`,
      ...veritysetupOptions(draft).filter((a) => !a.endsWith("-on-corruption") && !a.startsWith("--hash=")),
    ];
    if (draft.options.uuid !== undefined) formatArgs.push(`--uuid=${draft.options.uuid}`);
    const r = spawnSync(veritysetup, formatArgs, {
      encoding: "utf8",
      timeout: TOOL_TIMEOUT_MS,
      env: { PATH: process.env.PATH ?? "/usr/sbin:/usr/bin:/sbin:/bin", LC_ALL: "C" },
    });
    if (r.error || r.status !== 0)
      throw new CvmError(
        "unlock",
        `veritysetup format failed (exit ${r.status}): ${r.error?.message ?? r.stderr.slice(-500)}`,
      );
    const roothash = rootHashFromReport(r.stdout, alg);
    let signature: Uint8Array | undefined;
    if (key !== undefined && cert !== undefined) {
      signature = sign(roothash, key, cert);
      // what the guest will check, checked here first
      checkRootHashSignature(draft.name, roothash, signature, signers!);
    }
    const vols: VerityVolume[] = parseVerityResource(new TextEncoder().encode(describe(roothash, signature)));
    const json = encodeVerityResource(vols);
    const out = optString(args, "out");
    if (out !== undefined) {
      fs.writeFileSync(out, json, { mode: 0o644 });
      io.stdout.write(
        `${out}: verity resource for ${draft.name}, root hash ${roothash}${signature ? " (signed)" : ""}\n`,
      );
    } else io.stdout.write(json);
    io.log.info(`verity format: root hash ${roothash}`);
    return 0;
  },
};

/** The volume the flags describe, checked before veritysetup runs; its errors name the flags, not resource fields. */
function draftVolume(json: string): VerityVolume {
  try {
    return parseVerityResource(new TextEncoder().encode(json))[0]!;
  } catch (e) {
    if (!(e instanceof CvmError)) throw e;
    throw new CvmError("usage", `${e.message} (from --name/--hash/--data/--hash-device/--option)`, {
      hint: "docs/VERITY.md lists the allowed options and partition names",
    });
  }
}
