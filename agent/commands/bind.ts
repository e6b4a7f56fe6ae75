// `cvm-unlock bind DEVICE`: enrol a fresh random key for cvm-unlock in one command (docs/PROVISIONING.md):
//   1. check everything that can be checked without changing anything (arguments, header, that the
//      existing key opens the volume, a free keyslot, the slots to wipe);
//   2. hand the KBS side its value: upload the key (or key document) and the resource policy through
//      trustee's admin API, or, without admin credentials, write the value to --key-out-fd;
//   3. only then touch the header: add the keyslot, write the token linked to it, wipe old slots,
//      and check that the new key opens the new slot.
// A refused upload therefore leaves the header exactly as it was. `--token-only` keeps the old
// behaviour: write the token and nothing else.
import * as crypto from "node:crypto";
import * as fs from "node:fs";
import { CvmError, errorMessage } from "../../platform/util/errors.ts";
import { Deadline } from "../../platform/util/deadline.ts";
import type { Logger } from "../../platform/util/log.ts";
import { readLuks2Header } from "../../platform/luks/volume-io.ts";
import { optBool, optInt, optString, type ParsedArgs } from "../cli/args.ts";
import type { Command, CommandIO } from "../cli/command.ts";
import { mergeLayers, readConfigFile } from "../config/load.ts";
import type { CvmToken } from "../config/layers/token.ts";
import { verifyHeaderPolicy } from "../unlock/header-policy.ts";
import { findCryptsetup } from "../unlock/cryptsetup.ts";
import { ADMIN_OPTIONS, planFromArgs, tokenFromArgs, type Plan } from "../provision/bind-plan.ts";
import {
  addKeyslot,
  keyOpens,
  keyslotIds,
  killKeyslot,
  MAX_KEYSLOTS,
  writeCvmToken,
  type Volume,
} from "../provision/enroll.ts";
import { readExistingKey } from "../provision/existing-key.ts";
import { deliverToKbs } from "../provision/kbs-side.ts";
import { loadOsPipe } from "../provision/native-pipe.ts";
import { resourceValue, volumePins } from "../provision/resource-value.ts";

/** 512 random bits: the keyslot passphrase the KBS releases. */
export const NEW_KEY_BYTES = 64;
const BIND_DEADLINE_MS = 180_000;

export const bindCommand: Command = {
  name: "bind",
  usage:
    "bind DEVICE --kbs URL [--kbs URL...] --resource REPO/TYPE/TAG [--ca FILE | --ca-sha256 HEX]\n" +
    "     (--admin-key FILE | --admin-token-file FILE | --admin-anonymous | --key-out-fd N)\n" +
    "     [--unlock-key-file FILE|-] [--pin uuid|digest]... [--wipe-slot N|all-but-new]...\n" +
    "     [--policy tpm-pcrs=LIST|init-data=HEX|snp-measurement=HEX]... [--pcr-values FILE] [--resource-policy FILE.rego]\n" +
    "  or: bind DEVICE --token-only --kbs URL --resource REPO/TYPE/TAG [--ca FILE | --ca-sha256 HEX] [--key-slot N]\n" +
    "  or: bind --verity FILE --kbs URL --resource REPO/TYPE/TAG [--ca FILE] (admin options) [--policy ...]",
  description:
    "Adds a keyslot with a fresh random key, stores the key at the KBS (trustee admin API), links the\n" +
    "cvm-unlock LUKS2 token to the new keyslot. The key never appears on argv, in the environment or in logs.\n" +
    "The token only selects among what the trusted config allows (unlock.luks_token.*); see docs/PROVISIONING.md.",
  options: [
    {
      name: "kbs",
      kind: "list",
      value: "URL",
      help: "KBS endpoint recorded in the token (repeatable, tried in order)",
    },
    { name: "resource", kind: "string", value: "REPO/TYPE/TAG", help: "KBS resource holding this volume's key" },
    {
      name: "ca",
      kind: "string",
      value: "FILE",
      help: "PEM CA of the KBS: pinned for the upload, its fingerprint in the token",
    },
    {
      name: "ca-sha256",
      kind: "string",
      value: "HEX",
      help: "token only: SHA-256 of the DER of the KBS CA certificate",
    },
    {
      name: "unlock-key-file",
      kind: "string",
      value: "FILE",
      help: "existing passphrase/key of the volume (- = stdin; default: ask on the terminal)",
    },
    ...ADMIN_OPTIONS,
    { name: "admin-url", kind: "string", value: "URL", help: "KBS URL for the admin API (default: the first --kbs)" },
    {
      name: "key-out-fd",
      kind: "string",
      value: "N",
      help: "no upload: write the resource value to file descriptor N",
    },
    { name: "pin", kind: "list", value: "uuid|digest", help: "store a key document that pins the volume (repeatable)" },
    {
      name: "wipe-slot",
      kind: "list",
      value: "N|all-but-new",
      help: "wipe keyslot N, or every other keyslot, after enrolling",
    },
    {
      name: "policy",
      kind: "list",
      value: "TEMPLATE",
      help: "resource policy: tpm-pcrs=0,4,7,12 | init-data=HEX | snp-measurement=HEX",
    },
    {
      name: "pcr-values",
      kind: "string",
      value: "FILE",
      help: 'reference PCRs for tpm-pcrs: JSON {"pcr07": HEX|[HEX..]} or a TCG event log',
    },
    { name: "resource-policy", kind: "string", value: "FILE", help: "upload this Rego resource policy verbatim" },
    {
      name: "config",
      kind: "string",
      value: "FILE",
      help: "the image's trusted config: the header must pass its unlock.luks_allow (default: built-in)",
    },
    { name: "insecure-http", kind: "bool", help: "permit an http:// admin URL (testing only; logged)" },
    { name: "token-only", kind: "bool", help: "only write the token (no key, no upload)" },
    {
      name: "verity",
      kind: "string",
      value: "FILE",
      help: "no DEVICE: upload this verity resource (verity format output) as --resource (docs/VERITY.md)",
    },
    { name: "key-slot", kind: "string", value: "N", help: "with --token-only: keyslot recorded in the token" },
    {
      name: "cryptsetup",
      kind: "string",
      value: "PATH",
      help: "cryptsetup binary (default: found in the sbin directories)",
      hidden: true,
    },
  ],
  async run(args, io) {
    const verity = optString(args, "verity");
    if (verity !== undefined) {
      if (args.positionals.length !== 0) throw new CvmError("usage", "bind --verity FILE takes no DEVICE");
      return (await import("../provision/verity-upload.ts")).uploadVerityResource(args, io, verity);
    }
    if (args.positionals.length !== 1) throw new CvmError("usage", "bind needs exactly one DEVICE");
    const device = args.positionals[0]!;
    const { token, caPem } = tokenFromArgs(args);
    const header = readLuks2Header(device);
    // A header the agent would refuse at boot must not get a key: same allow-list, before anything.
    const configFile = optString(args, "config");
    const layers = configFile !== undefined ? [readConfigFile(configFile, true)!] : [];
    verifyHeaderPolicy(header, mergeLayers(layers).config.unlock.luks_allow, device);
    warnIfImage(device, io.log);
    const bin = findCryptsetup(optString(args, "cryptsetup") ?? "cryptsetup");
    const deadline = new Deadline(BIND_DEADLINE_MS);
    try {
      const volume: Volume = { bin, device, deadline };
      if (optBool(args, "token-only")) {
        const slot = optInt(args, "key-slot", 0, MAX_KEYSLOTS - 1);
        const t = { ...token, keyslots: slot === undefined ? [] : [String(slot)] };
        const { id, replaced } = await writeCvmToken(volume, t);
        io.stdout.write(`${device}: cvm-unlock token ${id} ${replaced ? "replaced" : "added"} (${describeToken(t)})\n`);
        // What a key document for this volume should pin (docs/UNLOCK.md "Key resource").
        io.stdout.write(`pins: ${JSON.stringify(volumePins(header, ["uuid", "digest"]))}\n`);
        return 0;
      }
      const plan = planFromArgs(args, device, token, caPem, keyslotIds(device), io.log);
      return await enrol(plan, volume, args, io, deadline);
    } finally {
      deadline.dispose();
    }
  },
};

function describeToken(t: CvmToken): string {
  return `resource ${t.resource}, ${t.endpoints.length} endpoint(s)${t.caSha256 ? `, CA ${t.caSha256.slice(0, 16)}…` : ""}`;
}

/** Cloned images share the volume key: binding a file is usually a golden image. */
function warnIfImage(device: string, log: Logger): void {
  if (fs.statSync(device).isFile())
    log.warning(
      `${device} is an image file, not a VM's own disk: every VM cloned from it shares this volume key and KBS resource ` +
        '(docs/PROVISIONING.md "Clones": re-key each instance)',
    );
}

async function enrol(plan: Plan, volume: Volume, args: ParsedArgs, io: CommandIO, deadline: Deadline): Promise<number> {
  const { device } = plan;
  const pipe = await loadOsPipe();
  if (!pipe)
    throw new CvmError("internal", "bind needs the compiled binary (bun): node has no pipe(2) for the new key");
  const existingKey = await readExistingKey(optString(args, "unlock-key-file"), device);
  const newKey = Buffer.alloc(NEW_KEY_BYTES); // unpooled, zeroed in finally
  let value: Buffer | undefined;
  try {
    if (!(await keyOpens(volume, existingKey)))
      throw new CvmError("wrong-key", `the existing key does not open ${device}: nothing was changed`, {
        hint: "--unlock-key-file must hold a passphrase or key of one of the volume's keyslots (no trailing newline)",
      });
    crypto.randomFillSync(newKey);
    const header = readLuks2Header(device);
    const pins = volumePins(header, plan.pins);
    value = resourceValue(newKey, pins);

    // 2. The KBS side first: a refusal here changes nothing on the volume.
    const resource = plan.token.resource;
    await deliverToKbs(plan, value, deadline, io);

    // 3. The header.
    let slot: string;
    try {
      slot = await addKeyslot(volume, existingKey, newKey, pipe);
    } catch (e) {
      throw new CvmError(
        e instanceof CvmError ? e.kind : "unlock",
        `${errorMessage(e)}. The KBS resource ${resource} now holds a key that opens no keyslot of ${device}`,
        {
          hint: `fix the cause and run bind again (it replaces ${resource}); until then no VM can unlock ${device} through the KBS`,
          cause: e,
        },
      );
    }
    const before = keyslotIds(device).filter((s) => s !== slot);
    const { id } = await writeCvmToken(volume, { ...plan.token, keyslots: [slot] });
    const wiped = plan.wipe === "all-but-new" ? before : plan.wipe;
    for (const s of wiped) await killKeyslot(volume, s, newKey);
    if (!(await keyOpens(volume, newKey, slot)))
      throw new CvmError("wrong-key", `keyslot ${slot} of ${device} does not open with the new key (read back failed)`);

    io.stdout.write(
      `${device}: keyslot ${slot} added (PBKDF2-SHA256, 1000 iterations; ${NEW_KEY_BYTES}-byte random key), ` +
        `cvm-unlock token ${id} linked to it (${describeToken(plan.token)})\n`,
    );
    if (wiped.length > 0) io.stdout.write(`${device}: keyslot(s) ${wiped.join(", ")} wiped\n`);
    io.stdout.write(
      Object.keys(pins).length > 0
        ? `pins: ${JSON.stringify(pins)}\n`
        : "resource: the raw key (no pins; --pin uuid --pin digest pin the volume)\n",
    );
    return 0;
  } finally {
    existingKey.fill(0);
    newKey.fill(0);
    value?.fill(0);
  }
}
