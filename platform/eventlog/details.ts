// One-line descriptions of common event payloads (UEFI variables, loaded images, firmware blobs,
// action strings), for `inspect`. Informational only — replay never depends on them — so a
// malformed payload yields undefined instead of an error.
import { hex } from "../util/bytes.ts";
import { guidFromBytes } from "../util/guid.ts";
import type { LogEvent } from "./parse.ts";

const MAX_TEXT = 200;

const utf16 = (b: Uint8Array) => new TextDecoder("utf-16le").decode(b).replace(/\0+$/, "");
const printable = (s: string) => (/^[\x20-\x7e]*$/.test(s) ? s.slice(0, MAX_TEXT) : undefined);

function ascii(data: Uint8Array): string | undefined {
  const s = new TextDecoder("latin1").decode(data.subarray(0, 1024)).replace(/\0+$/, "");
  return s.length ? printable(s) : undefined;
}

/** UEFI_VARIABLE_DATA: VariableName GUID, UnicodeNameLength u64, VariableDataLength u64, name, data. */
function uefiVariable(d: Uint8Array): string | undefined {
  if (d.length < 32) return undefined;
  const v = new DataView(d.buffer, d.byteOffset, d.length);
  const nameLen = v.getBigUint64(16, true);
  const dataLen = v.getBigUint64(24, true);
  if (nameLen > 512n || 32n + nameLen * 2n + dataLen > BigInt(d.length)) return undefined;
  const name = printable(utf16(d.subarray(32, 32 + Number(nameLen) * 2)));
  return name === undefined
    ? undefined
    : `${name} (${guidFromBytes(d.subarray(0, 16), "uefi")}), ${dataLen} data bytes`;
}

/** UEFI_IMAGE_LOAD_EVENT: the file path nodes of its device path, if any. */
function imageLoad(d: Uint8Array): string | undefined {
  if (d.length < 32) return undefined;
  const v = new DataView(d.buffer, d.byteOffset, d.length);
  const len = v.getBigUint64(24, true);
  if (32n + len > BigInt(d.length)) return undefined;
  const dp = d.subarray(32, 32 + Number(len));
  const parts: string[] = [];
  for (let o = 0, n = 0; o + 4 <= dp.length && n < 64; n++) {
    const type = dp[o]!;
    const sub = dp[o + 1]!;
    const nodeLen = dp[o + 2]! | (dp[o + 3]! << 8);
    if (nodeLen < 4 || o + nodeLen > dp.length || type === 0x7f) break;
    if (type === 4 && sub === 4) parts.push(utf16(dp.subarray(o + 4, o + nodeLen)));
    o += nodeLen;
  }
  const path = parts.join("/").replace(/\\/g, "/").replace(/\/+/g, "/");
  return `image at 0x${v.getBigUint64(0, true).toString(16)}, ${v.getBigUint64(8, true)} bytes${path ? `, ${printable(path) ?? "(non-ASCII path)"}` : ""}`;
}

/** EV_EFI_PLATFORM_FIRMWARE_BLOB2 / EV_EFI_HANDOFF_TABLES2: u8 description size + description. */
function described(d: Uint8Array): string | undefined {
  if (d.length < 1 || 1 + d[0]! > d.length) return undefined;
  return ascii(d.subarray(1, 1 + d[0]!));
}

export function describeEvent(e: Pick<LogEvent, "type" | "data">): string | undefined {
  const d = e.data;
  try {
    switch (e.type) {
      case 0x80000001: // EV_EFI_VARIABLE_DRIVER_CONFIG
      case 0x80000002: // EV_EFI_VARIABLE_BOOT
      case 0x8000000c: // EV_EFI_VARIABLE_BOOT2
      case 0x800000e0: // EV_EFI_VARIABLE_AUTHORITY
        return uefiVariable(d);
      case 0x80000003: // EV_EFI_BOOT_SERVICES_APPLICATION
      case 0x80000004: // EV_EFI_BOOT_SERVICES_DRIVER
      case 0x80000005: // EV_EFI_RUNTIME_SERVICES_DRIVER
        return imageLoad(d);
      case 0x8000000a:
      case 0x8000000b:
        return described(d);
      case 0x4: // EV_SEPARATOR
        return d.length === 4 ? `separator ${hex(d)}${d.every((x) => x === 0) ? "" : " (error separator)"}` : undefined;
      case 0x8: // EV_S_CRTM_VERSION: usually UCS-2
        return d.length >= 2 && d.length % 2 === 0 && d[1] === 0 ? printable(utf16(d)) : ascii(d);
      default:
        return ascii(d);
    }
  } catch {
    return undefined;
  }
}
