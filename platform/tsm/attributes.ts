// Pure helpers for configfs-tsm report attributes (docs/spec/configfs-tsm.md §1): names, limits and the
// parsing of the small text attributes. No I/O here, so every rule is unit-testable.
import { randomBytes } from "node:crypto";
import { hex } from "../util/bytes.ts";
import { ParseError } from "../util/errors.ts";

/** SEV and TDX providers require exactly 64 bytes of inblob (TSM_REPORT_INBLOB_MAX). */
export const INBLOB_SIZE = 64;

/**
 * Upper bounds for what we accept from the kernel (host-influenced data):
 * - outblob: 64 KiB. An SNP report is 1184 bytes; TDX quotes come from an 8 KiB GetQuote buffer
 *   (a quote with its PCK chain is ~5 KiB). The kernel's own cap is 32 KiB (16 MiB in newer trees).
 * - auxblob: 256 KiB. The SNP cert table is bounded by SEV_FW_BLOB_MAX_SIZE (16 KiB, maybe 20 KiB);
 *   a VCEK+ASK+ARK table is ~4.5 KiB. 16x margin, still small enough to never hurt.
 * - text attributes (provider, generation, privlevel_floor): one page.
 */
export interface TsmLimits {
  outblob: number;
  auxblob: number;
  text: number;
}
export const DEFAULT_TSM_LIMITS: TsmLimits = { outblob: 64 * 1024, auxblob: 256 * 1024, text: 4096 };

/** Attribute file names (Documentation/ABI/testing/configfs-tsm-report). */
export const ATTR = {
  inblob: "inblob",
  outblob: "outblob",
  auxblob: "auxblob",
  provider: "provider",
  generation: "generation",
  privlevel: "privlevel",
  privlevelFloor: "privlevel_floor",
} as const;

/** A private entry name per request, so concurrent users (other processes) never share one. */
export function newEntryName(): string {
  return `cvm-unlock-${process.pid}-${hex(randomBytes(6))}`;
}

function asciiLine(bytes: Uint8Array, structure: string, field: string): string {
  for (let i = 0; i < bytes.length; i++) {
    const c = bytes[i]!;
    const last = i === bytes.length - 1;
    if (c === 0x0a && last) break;
    if (c < 0x20 || c > 0x7e)
      throw new ParseError(
        structure,
        field,
        i,
        `unexpected byte 0x${c.toString(16).padStart(2, "0")} in a text attribute`,
      );
  }
  const text = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString("latin1");
  return text.endsWith("\n") ? text.slice(0, -1) : text;
}

/** `generation`: decimal text with a trailing newline (the kernel prints "%u\n"). */
export function parseGeneration(bytes: Uint8Array): number {
  const text = asciiLine(bytes, "configfs-tsm generation", "generation");
  if (!/^[0-9]{1,15}$/.test(text))
    throw new ParseError(
      "configfs-tsm generation",
      "generation",
      0,
      `not a decimal counter: ${JSON.stringify(text.slice(0, 32))}`,
    );
  return Number(text);
}

/** `provider`: the provider module name ("sev_guest", "tdx_guest", "arm_cca_guest", ...). */
export function parseProvider(bytes: Uint8Array): string {
  const text = asciiLine(bytes, "configfs-tsm provider", "provider");
  if (!/^[a-z0-9_]{1,64}$/.test(text))
    throw new ParseError(
      "configfs-tsm provider",
      "provider",
      0,
      `not a provider name: ${JSON.stringify(text.slice(0, 32))}`,
    );
  return text;
}

/** `privlevel_floor`: decimal VMPL 0..3. */
export function parsePrivlevel(bytes: Uint8Array, field = "privlevel_floor"): number {
  const text = asciiLine(bytes, "configfs-tsm privlevel", field);
  if (!/^[0-3]$/.test(text))
    throw new ParseError("configfs-tsm privlevel", field, 0, `not a VMPL 0..3: ${JSON.stringify(text.slice(0, 32))}`);
  return Number(text);
}

/** What a failed configfs-tsm operation means, for the operator (errno → explanation). */
export function explainTsmErrno(code: string | undefined, doing: string): string {
  switch (code) {
    case "ENXIO":
      return `${doing}: no TSM provider is registered or the provider failed (is the sev-guest / tdx-guest driver loaded?)`;
    case "EINVAL":
      return `${doing}: the provider rejected the request (inblob must be 64 bytes; privlevel must be within privlevel_floor..3)`;
    case "EBUSY":
      return `${doing}: the provider is busy (a previous quote request is still in flight)`;
    case "ETIMEDOUT":
      return `${doing}: the provider timed out talking to the host/firmware`;
    case "EIO":
      return `${doing}: the host/firmware failed the request`;
    case "EFBIG":
      return `${doing}: the report is larger than the kernel's attribute limit`;
    case "EACCES":
    case "EPERM":
      return `${doing}: permission denied (configfs-tsm needs root)`;
    case "ENOENT":
      return `${doing}: missing (configfs not mounted, or this kernel has no configfs-tsm report support)`;
    case "EINTR":
      return `${doing}: interrupted`;
    default:
      return `${doing}: ${code ?? "unknown error"}`;
  }
}
