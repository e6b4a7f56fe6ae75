// `config --check`: what `unlock` will require of its configuration, checked when the initramfs
// is built (no device, TPM or network needed) with the functions unlock itself runs, so that a
// configuration unlock would refuse (exit 3 at boot = poweroff) fails the build instead.
// Values a trusted host-influenced layer may still supply at boot (kernel cmdline, LUKS2 token)
// are not required here; they are listed as notes.
import { kbsFiles, kbsInputs } from "../attest.ts";
import { readCa } from "../cli/common.ts";
import { endpointUrl } from "../kbs/transport.ts";
import { checkTeeAllowed } from "../select.ts";
import { volumeResource, volumesToUnlock } from "../unlock/unlock.ts";
import { hasSelector, requireSelector } from "../../platform/luks/resolve.ts";
import type { Config } from "./schema.ts";
import { checkVerityConfig } from "../verity/open.ts";

const CMDLINE = "the kernel command line (unlock.trust_cmdline)";
const TOKEN = "the LUKS2 token (unlock.luks_token)";

/** Throws the error unlock would raise; returns notes on what is left to the boot. */
export function checkUnlockConfig(config: Config): string[] {
  const notes: string[] = [];
  const u = config.unlock;
  const fromCmdline = u.trust_cmdline;
  const later = (what: string, ...from: (string | false)[]) =>
    notes.push(`${what} is not set: it must come from ${from.filter(Boolean).join(" or ")} at boot`);

  if (u.volumes.length === 0 && config.verity) {
    // a verity root alone (state on tmpfs) needs no LUKS2 volume
  } else if (u.volumes.length === 0 && fromCmdline) later("unlock.volumes", CMDLINE);
  else
    volumesToUnlock(config).forEach((v, i) => {
      // rd.cvm_unlock.{uuid,partlabel,gpt_auto_root} replace the selector of the first volume
      if (i === 0 && fromCmdline && !hasSelector(v)) later(`unlock.volumes[0] selector`, CMDLINE);
      else requireSelector(v);
    });
  const resourceLater = [
    fromCmdline && CMDLINE,
    u.luks_token.trust && u.luks_token.allowed_resources.length > 0 && TOKEN,
  ];
  for (const v of u.volumes)
    if (v.resource === undefined && config.resource === undefined && resourceLater.some(Boolean))
      later(`resource of volume ${v.name}`, ...resourceLater);
    else volumeResource(v, config);

  checkTeeAllowed(config.platform);

  const endpointsLater = [
    fromCmdline && CMDLINE,
    u.luks_token.trust && u.luks_token.allowed_endpoints.length > 0 && TOKEN,
  ];
  for (const e of [...config.kbs.endpoints, ...u.luks_token.allowed_endpoints])
    endpointUrl(e, "/", config.kbs.insecure_http);
  if (config.kbs.endpoints.length === 0 && endpointsLater.some(Boolean)) {
    later("kbs.endpoints", ...endpointsLater);
    kbsFiles(config);
  } else kbsInputs(config);
  // a token may select any of these as kbs.ca_file: each must be what readCa accepts
  for (const f of u.luks_token.allowed_ca_files)
    readCa({ ...config, kbs: { ...config.kbs, ca_pem: undefined, ca_file: f } });
  if (config.verity) checkVerityConfig(config.verity);
  return notes;
}
