// `cvm-unlock config --explain`: the merged configuration and the source of every value
// (built-in default, trusted file, kernel cmdline, LUKS2 token, flag). Holds no secrets: the
// configuration never contains key material.
// `config --check` / `--files`: the initramfs build-time checks of the dracut module (what
// `unlock` will require; the files to install), agent/config/check.ts and files.ts.
import * as path from "node:path";
import { CvmError } from "../../platform/util/errors.ts";
import { silentLogger } from "../../platform/util/log.ts";
import { optBool, optString } from "../cli/args.ts";
import type { ParsedArgs } from "../cli/args.ts";
import type { Command, CommandIO } from "../cli/command.ts";
import { configFiles, filesUnder } from "../config/files.ts";
import { configLoader, configOptions, loadConfig, platformRoot } from "../cli/common.ts";
import { loadUnlockConfig } from "../unlock/unlock.ts";
import { findCvmToken, tokenLayer } from "../config/layers/token.ts";
import { readLuks2Header } from "../../platform/luks/volume-io.ts";

interface Row {
  path: string;
  value: unknown;
  source: string;
}

function flatten(v: unknown, prefix: string, out: [string, unknown][]): void {
  if (typeof v === "object" && v !== null && !Array.isArray(v)) {
    const entries = Object.entries(v).filter(([, x]) => x !== undefined);
    if (entries.length === 0 && prefix) out.push([prefix, {}]);
    for (const [k, x] of entries) flatten(x, prefix ? `${prefix}.${k}` : k, out);
  } else out.push([prefix, v]);
}

/** The source of `p`: its own entry, or the nearest ancestor's (arrays/objects replaced as a whole). */
export function sourceOf(prov: Map<string, string>, p: string): string {
  for (let cur = p; cur; cur = cur.includes(".") ? cur.slice(0, cur.lastIndexOf(".")) : "") {
    const s = prov.get(cur);
    if (s) return s;
  }
  return "default";
}

/** --check and --files: the trusted file and flags only (the build host's cmdline is not the guest's). */
async function buildTimeCheck(args: ParsedArgs, io: CommandIO): Promise<number> {
  const { config } = loadConfig(args, io.log);
  if (optBool(args, "files")) {
    for (const f of configFiles(config)) io.stdout.write(`${f.key}\t${f.path}\n`);
    return 0;
  }
  const root = optString(args, "files-root");
  const { checkUnlockConfig } = await import("../config/check.ts");
  const notes = checkUnlockConfig(root !== undefined ? filesUnder(config, path.resolve(root)) : config);
  for (const n of notes) io.stdout.write(`note: ${n}\n`);
  // the dracut module reads this line: it installs veritysetup and masks gpt-auto for a verity root
  if (config.verity)
    io.stdout.write(
      `verity: root hash from KBS resource ${config.verity.resource}, ${config.verity.signer_cert ? `signed by ${config.verity.signer_cert}` : "not signature-checked"}\n`,
    );
  io.stdout.write(`config OK: unlock would accept it${notes.length ? " (with the notes above)" : ""}\n`);
  return 0;
}

export const configCommand: Command = {
  name: "config",
  usage: "config --explain|--check|--files [options] [--device PATH]",
  description:
    "Layers: defaults < trusted file < init-data (if init_data.configure) < kernel cmdline (if trusted) < LUKS2 token (if trusted; give --device) < flags.",
  options: [
    ...configOptions,
    { name: "explain", kind: "bool", help: "print every value with its source" },
    { name: "device", kind: "string", value: "PATH", help: "also apply the cvm-unlock LUKS2 token of this volume" },
    { name: "json", kind: "bool", help: "print JSON {config, sources}" },
    {
      name: "check",
      kind: "bool",
      help: "fail (exit 3) unless unlock would accept the config: volumes, resource, endpoints, tee, CA bundle, files",
    },
    {
      name: "files",
      kind: "bool",
      help: "list the files the config names (KEY<TAB>PATH), to install in the initramfs",
    },
    {
      name: "files-root",
      kind: "string",
      value: "DIR",
      help: "with --check: read those files under DIR (the initramfs tree being built)",
    },
  ],
  async run(args, io) {
    const modes = ["explain", "check", "files"].filter((m) => optBool(args, m));
    if (modes.length !== 1) throw new CvmError("usage", "config needs exactly one of --explain, --check, --files");
    if (optString(args, "files-root") !== undefined && !optBool(args, "check"))
      throw new CvmError("usage", "--files-root goes with --check");
    if (!optBool(args, "explain")) return buildTimeCheck(args, io);
    const load = configLoader(args);
    let { loaded, hostLayers } = await loadUnlockConfig(load, io.log, platformRoot(args));
    const device = optString(args, "device");
    if (device !== undefined) {
      const found = findCvmToken(readLuks2Header(device));
      if (found && loaded.config.unlock.luks_token.trust)
        loaded = load(silentLogger, [...hostLayers, tokenLayer(device, found, loaded.config)]);
      else if (found)
        io.log.warning(`${device} has a cvm-unlock token, but unlock.luks_token.trust is not set: ignored`);
    }
    const pairs: [string, unknown][] = [];
    flatten(loaded.config, "", pairs);
    const rows: Row[] = pairs.map(([p, value]) => ({ path: p, value, source: sourceOf(loaded.provenance, p) }));
    if (optBool(args, "json")) {
      io.stdout.write(
        JSON.stringify(
          { config: loaded.config, sources: Object.fromEntries(rows.map((r) => [r.path, r.source])) },
          null,
          2,
        ) + "\n",
      );
      return 0;
    }
    const w = Math.max(...rows.map((r) => r.path.length));
    for (const r of rows) io.stdout.write(`${r.path.padEnd(w)}  ${JSON.stringify(r.value)}  [${r.source}]\n`);
    return 0;
  },
};
