// The files a configuration names that must exist in the initramfs. The dracut module installs
// exactly these (`config --files`) and `config --check --files-root DIR` validates them as the
// initramfs will see them. Every path-valued key is classified here; a unit test fails when a new
// one is added to the schema without a decision.
import * as path from "node:path";
import { CvmError } from "../../platform/util/errors.ts";
import type { Config } from "./schema.ts";

/** Inputs the agent reads at boot: installed into the initramfs, the build fails when one is missing. */
export const INSTALLED_FILE_KEYS = [
  "kbs.ca_file",
  "kbs.init_data_file",
  "unlock.luks_token.allowed_ca_files",
  "verity.signer_cert",
] as const;
/**
 * Path-valued keys that are not inputs: devices and outputs found or made at boot, and the tools the
 * module installs (cryptsetup; dmsetup through dracut's dm module).
 */
export const RUNTIME_PATH_KEYS = [
  "platform.tpm",
  "unlock.volumes.device",
  "unlock.measure.record_path",
  "unlock.cryptsetup",
  "unlock.dmsetup",
  "verity.veritysetup",
] as const;

export interface ConfigFile {
  key: (typeof INSTALLED_FILE_KEYS)[number];
  path: string;
}

/** The installed files of `config`, in key order; each an absolute path without tabs or newlines. */
export function configFiles(config: Config): ConfigFile[] {
  const out: ConfigFile[] = [];
  const add = (key: ConfigFile["key"], p: string | undefined) => {
    if (p === undefined) return;
    // the boot reads them by this exact path; relative paths would depend on the unit's cwd
    if (!path.isAbsolute(p) || /[\t\n\r]/.test(p))
      throw new CvmError("config", `${key}: ${JSON.stringify(p)} must be an absolute path without tabs or newlines`);
    out.push({ key, path: p });
  };
  add("kbs.ca_file", config.kbs.ca_file);
  add("kbs.init_data_file", config.kbs.init_data_file);
  for (const f of config.unlock.luks_token.allowed_ca_files) add("unlock.luks_token.allowed_ca_files", f);
  add("verity.signer_cert", config.verity?.signer_cert);
  return out;
}

/** `config` with every installed file looked up under `root` (the initramfs tree being built). */
export function filesUnder(config: Config, root: string): Config {
  const at = (p: string) => path.join(root, p);
  const c = structuredClone(config);
  if (c.kbs.ca_file !== undefined) c.kbs.ca_file = at(c.kbs.ca_file);
  if (c.kbs.init_data_file !== undefined) c.kbs.init_data_file = at(c.kbs.init_data_file);
  c.unlock.luks_token.allowed_ca_files = c.unlock.luks_token.allowed_ca_files.map(at);
  if (c.verity?.signer_cert !== undefined) c.verity.signer_cert = at(c.verity.signer_cert);
  return c;
}
