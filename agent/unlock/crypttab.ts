// /etc/crypttab of the initramfs (crypttab(5)) for mode B: the entries whose key file is the
// cvm-unlock key socket are the volumes the key server serves. The file is part of the attested
// initramfs (the dracut module installs the one the image build provides), so it is trusted
// configuration; options that would make systemd-cryptsetup use the key in a way our header
// checks do not cover are refused here, before any KBS contact.
import { CvmError } from "../../platform/util/errors.ts";
import { fileText, readFileBounded } from "../../platform/util/files.ts";
import { UUID_PATTERN } from "../config/patterns.ts";
import { DM_NAME_PATTERN, volumeSchema } from "../config/unlock-schema.ts";
import type { Config } from "../config/schema.ts";
import type { VolumeSelector } from "../../platform/luks/resolve.ts";

export const DEFAULT_CRYPTTAB = "/etc/crypttab";
export const DEFAULT_KEY_SOCKET = "/run/cvm-unlock/key.sock";
const MAX_CRYPTTAB = 64 * 1024;
const MAX_ENTRIES = 16;

export interface CrypttabEntry {
  name: string;
  source: string;
  keyFile: string | undefined;
  options: string[];
  line: number;
}

/** A crypttab entry the key server serves: where its device is, and the dm-crypt options it asks for. */
export interface SocketVolume {
  name: string;
  selector: Pick<VolumeSelector, "uuid" | "partlabel" | "device">;
  /** dm table parameters the trusted crypttab asked for (discard → allow_discards). */
  tableOptions: string[];
  line: number;
}

/**
 * Options that hand the volume to another key path (a detached header, a slice of the key file,
 * hardware tokens) or to another format: the served key and the checked header would no longer
 * be what systemd-cryptsetup uses.
 */
const REFUSED_OPTIONS = [
  "header",
  "keyfile-offset",
  "keyfile-size",
  "keyfile-erase",
  "key-slot",
  "plain",
  "tcrypt",
  "bitlk",
  "tpm2-device",
  "fido2-device",
  "pkcs11-uri",
  "password-echo",
  // tried after a failed key: a header swapped in after our check, with an empty-password keyslot,
  // would open with a volume key the host knows, and the dm table alone cannot tell
  "try-empty-password",
  "integrity",
  "offset",
  "skip",
];

export function parseCrypttab(text: string, where: string): CrypttabEntry[] {
  if (text.length > MAX_CRYPTTAB) throw new CvmError("config", `${where} is implausibly large`);
  const out: CrypttabEntry[] = [];
  text.split("\n").forEach((raw, i) => {
    const line = raw.trim();
    if (line === "" || line.startsWith("#")) return;
    const f = line.split(/\s+/);
    if (f.length < 2 || f.length > 4)
      throw new CvmError("config", `${where}:${i + 1}: expected 2 to 4 fields (name, device, key file, options)`);
    const keyFile = f[2] === undefined || f[2] === "-" || f[2] === "none" ? undefined : f[2];
    out.push({
      name: f[0]!,
      source: f[1]!,
      keyFile,
      options: f[3] ? f[3].split(",").filter(Boolean) : [],
      line: i + 1,
    });
  });
  return out;
}

function selectorOf(source: string, where: string): SocketVolume["selector"] {
  const eq = source.indexOf("=");
  const tag = eq > 0 ? source.slice(0, eq) : "";
  const value = eq > 0 ? source.slice(eq + 1) : source;
  switch (tag) {
    case "UUID":
      if (!UUID_PATTERN.test(value)) throw new CvmError("config", `${where}: UUID=${value} is not a UUID`);
      return { uuid: value.toLowerCase() };
    case "PARTLABEL":
      return { partlabel: value };
    case "PARTUUID":
      return { device: `/dev/disk/by-partuuid/${value.toLowerCase()}` };
    case "LABEL":
      return { device: `/dev/disk/by-label/${value}` };
    default:
      if (!source.startsWith("/"))
        throw new CvmError(
          "config",
          `${where}: the device ${JSON.stringify(source)} is not UUID=, PARTUUID=, LABEL=, PARTLABEL= or an absolute path`,
        );
      return { device: source };
  }
}

/** systemd-cryptsetup's reading of headless: the last headless[=BOOL] option wins (parse_boolean). */
function headless(options: string[]): boolean {
  const last = options.filter((o) => o === "headless" || o.startsWith("headless=")).pop();
  return last !== undefined && (last === "headless" || ["1", "yes", "y", "true", "t", "on"].includes(last.slice(9)));
}

/** The entries whose key file is `socket`, checked: LUKS, headless, nothing that bypasses the served key. */
export function socketVolumes(entries: CrypttabEntry[], socket: string, where: string): SocketVolume[] {
  const ours = entries.filter((e) => e.keyFile === socket);
  if (ours.length > MAX_ENTRIES)
    throw new CvmError("config", `${where} names the key socket ${ours.length} times (at most ${MAX_ENTRIES})`);
  return ours.map((e) => {
    const at = `${where}:${e.line} (${e.name})`;
    if (!DM_NAME_PATTERN.test(e.name))
      throw new CvmError("config", `${at}: the volume name is not a device-mapper name cvm-unlock accepts`);
    // Also against entries with another key file: systemd would open only one of them under this name.
    if (entries.some((o) => o !== e && o.name === e.name))
      throw new CvmError("config", `${at}: the volume name appears twice`);
    const keys = e.options.map((o) => o.split("=", 1)[0]!);
    const refused = keys.find((k) => REFUSED_OPTIONS.includes(k));
    if (refused !== undefined)
      throw new CvmError("config", `${at}: option ${refused} is not supported with the cvm-unlock key socket`, {
        hint: 'mode B serves one whole key per LUKS2 volume whose header cvm-unlock checked (docs/UNLOCK.md "Mode B")',
      });
    if (!headless(e.options))
      throw new CvmError("config", `${at}: option headless=true is missing`, {
        hint: "without it a failed unlock falls back to a password prompt on the console, which belongs to the host",
      });
    return {
      name: e.name,
      selector: selectorOf(e.source, at),
      tableOptions: keys.includes("discard") ? ["allow_discards"] : [],
      line: e.line,
    };
  });
}

/** Read the crypttab and return the volumes that use `socket`; none is a configuration error. */
export function readSocketVolumes(file: string, socket: string): SocketVolume[] {
  const text = fileText(readFileBounded(file, { what: "the crypttab", max: MAX_CRYPTTAB, kind: "config" }));
  const volumes = socketVolumes(parseCrypttab(text, file), socket, file);
  if (volumes.length === 0)
    throw new CvmError("config", `${file} has no volume whose key file is ${socket}`, {
      hint: "mode B: add e.g. `root UUID=... /run/cvm-unlock/key.sock luks,headless=true` to the image's crypttab",
    });
  return volumes;
}

type VolumeConfig = Config["unlock"]["volumes"][number];

/** The crypttab entry joined with unlock.volumes[] of the same name (resource, pins, uuid). */
export function socketVolumeConfig(sv: SocketVolume, config: Config): VolumeConfig {
  const configured = config.unlock.volumes.find((v) => v.name === sv.name);
  const base: VolumeConfig = configured ?? volumeSchema.parse({ name: sv.name }, `crypttab ${sv.name}`);
  const uuid = sv.selector.uuid;
  if (uuid !== undefined && base.uuid !== undefined && base.uuid.toLowerCase() !== uuid)
    throw new CvmError("config", `crypttab names volume ${sv.name} UUID=${uuid}, but unlock.volumes says ${base.uuid}`);
  // The crypttab says where systemd-cryptsetup looks: we check that same device.
  return {
    ...base,
    uuid: base.uuid ?? uuid,
    partlabel: sv.selector.partlabel,
    device: sv.selector.device,
    gpt_auto_root: false,
  };
}

/** Every configured volume must be one the crypttab serves through the socket (no silent leftovers). */
export function checkConfiguredVolumes(config: Config, served: SocketVolume[], crypttab: string): void {
  for (const v of config.unlock.volumes)
    if (!served.some((s) => s.name === v.name))
      throw new CvmError(
        "config",
        `unlock.volumes names ${v.name}, which ${crypttab} does not give the cvm-unlock key socket`,
        {
          hint: "mode B takes its volumes from crypttab; unlock.volumes only adds resource, uuid and pins to them",
        },
      );
}
