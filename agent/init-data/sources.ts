// Where init-data comes from. Every channel here is written by the host (or the cloud's control
// plane): nothing read here is trusted until its digest is bound into the evidence
// (./binding.ts) and checked by the KBS policy. Each channel is switched on by the trusted
// configuration (init_data.sources), tried in that order, first found wins; every read is bounded.
import * as fs from "node:fs";
import * as path from "node:path";
import { gunzipSync } from "node:zlib";
import { smbiosOemStrings, MAX_SMBIOS_ENTRY_BYTES } from "../../platform/firmware/smbios.ts";
import { fromB64url } from "../../platform/util/bytes.ts";
import type { Deadline } from "../../platform/util/deadline.ts";
import { CvmError, errorMessage } from "../../platform/util/errors.ts";
import { readFileBounded, readFileIfPresent } from "../../platform/util/files.ts";
import type { Logger } from "../../platform/util/log.ts";
import { splitCmdline } from "../config/layers/cmdline.ts";
import { fetchMetadata, type MetadataChannel } from "./metadata.ts";
import type { InitDataChannel } from "./channels.ts";
import { MAX_INIT_DATA_BYTES, parseInitData, type InitDataDocument } from "./document.ts";

/** `-smbios type=11,value=io.cvm-unlock.init-data:<base64url>` */
export const SMBIOS_PREFIX = "io.cvm-unlock.init-data:";
/** `-fw_cfg name=opt/io.cvm-unlock.init-data,file=init-data.toml` */
export const FW_CFG_NAME = "opt/io.cvm-unlock.init-data";
/** `cvm_unlock.init_data=<base64url>` on the kernel command line. */
export const CMDLINE_PARAM = "cvm_unlock.init_data";

/** base64 of the largest document, gzip-compressed or not. */
const MAX_ENCODED = Math.ceil((MAX_INIT_DATA_BYTES * 4) / 3) + 4;

export interface ChannelEnv {
  root: string;
  metadataUrl: string;
  deadline: Deadline;
  log: Logger;
}

/**
 * The document bytes of an encoded channel value: base64url (padding optional) of the TOML, or of
 * its gzip (peer-pods annotations carry base64(gzip(toml))). Inflation is capped.
 */
export function decodeChannelValue(value: string, origin: string): Uint8Array {
  const text = value.trim();
  if (text.length > MAX_ENCODED)
    throw new CvmError("config", `init-data from ${origin}: ${text.length} characters is more than ${MAX_ENCODED}`);
  let raw: Uint8Array;
  try {
    raw = fromB64url(text.replace(/=+$/, "").replace(/\+/g, "-").replace(/\//g, "_"), `init-data from ${origin}`);
  } catch (e) {
    throw new CvmError("config", `init-data from ${origin} is not base64url: ${errorMessage(e)}`);
  }
  return raw[0] === 0x1f && raw[1] === 0x8b ? inflate(raw, origin) : raw;
}

function inflate(gz: Uint8Array, origin: string): Uint8Array {
  try {
    return new Uint8Array(gunzipSync(gz, { maxOutputLength: MAX_INIT_DATA_BYTES }));
  } catch (e) {
    throw new CvmError(
      "config",
      `init-data from ${origin}: gzip content is corrupt or inflates past ${MAX_INIT_DATA_BYTES} bytes (${errorMessage(e)})`,
    );
  }
}

const MAX_SMBIOS_ENTRIES = 64;

function fromSmbios(env: ChannelEnv): Uint8Array | undefined {
  const dir = path.join(env.root, "sys/firmware/dmi/entries");
  let names: string[];
  try {
    names = fs.readdirSync(dir).filter((n) => /^11-\d+$/.test(n));
  } catch {
    return undefined; // no DMI sysfs: the module loads dmi-sysfs (docs/PACKAGING.md)
  }
  const found: string[] = [];
  for (const n of names.sort().slice(0, MAX_SMBIOS_ENTRIES)) {
    const raw = readFileIfPresent(path.join(dir, n, "raw"), { what: `SMBIOS entry ${n}`, max: MAX_SMBIOS_ENTRY_BYTES });
    if (!raw) continue;
    for (const s of smbiosOemStrings(raw)) if (s.startsWith(SMBIOS_PREFIX)) found.push(s.slice(SMBIOS_PREFIX.length));
  }
  if (found.length > 1)
    throw new CvmError("config", `SMBIOS carries ${found.length} ${SMBIOS_PREFIX} strings: refusing to choose one`);
  return found[0] === undefined ? undefined : decodeChannelValue(found[0], "smbios");
}

function fromFwCfg(env: ChannelEnv): Uint8Array | undefined {
  const p = path.join(env.root, "sys/firmware/qemu_fw_cfg/by_name", FW_CFG_NAME, "raw");
  const raw = readFileIfPresent(p, { what: "fw_cfg init-data", max: MAX_INIT_DATA_BYTES });
  if (!raw) return undefined;
  return raw[0] === 0x1f && raw[1] === 0x8b ? inflate(raw, "fw_cfg") : raw;
}

function fromCmdline(env: ChannelEnv): Uint8Array | undefined {
  const text = readFileIfPresent(path.join(env.root, "proc/cmdline"), { what: "kernel command line", max: 4096 });
  if (!text) return undefined;
  const values = splitCmdline(new TextDecoder().decode(text))
    .filter((t) => t.startsWith(CMDLINE_PARAM + "="))
    .map((t) => t.slice(CMDLINE_PARAM.length + 1));
  if (values.length > 1) throw new CvmError("config", `${CMDLINE_PARAM} is given ${values.length} times`);
  return values[0] === undefined ? undefined : decodeChannelValue(values[0], "cmdline");
}

async function readChannel(ch: InitDataChannel, env: ChannelEnv): Promise<Uint8Array | undefined> {
  switch (ch) {
    case "smbios":
      return fromSmbios(env);
    case "fw_cfg":
      return fromFwCfg(env);
    case "cmdline":
      return fromCmdline(env);
    default: {
      const text = await fetchMetadata(ch as MetadataChannel, env);
      return text === undefined ? undefined : decodeChannelValue(text, ch);
    }
  }
}

export interface InitDataRequest {
  channels: readonly InitDataChannel[];
  /** An explicit file (kbs.init_data_file / --init-data): used instead of the channels. */
  file?: string | undefined;
}

/** The first init-data found, parsed; undefined when no enabled channel has one. */
export async function findInitData(req: InitDataRequest, env: ChannelEnv): Promise<InitDataDocument | undefined> {
  if (req.file !== undefined) {
    const bytes = readFileBounded(req.file, {
      what: "init-data file (kbs.init_data_file)",
      max: MAX_INIT_DATA_BYTES,
      kind: "config",
      regularFile: true,
    });
    return parseInitData(bytes, `file:${req.file}`);
  }
  for (const ch of req.channels) {
    const bytes = await readChannel(ch, env);
    if (bytes) return parseInitData(bytes, ch);
    env.log.debug(`init-data: nothing in ${ch}`);
  }
  return undefined;
}
