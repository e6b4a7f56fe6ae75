// describeTpm(): what a person wants to know about the TPM (for `detect`). Never secrets.
import { errorMessage } from "../util/errors.ts";
import { TPM_HR, TPM_PT, algName, hex32 } from "./constants.ts";
import { withTpm, type Tpm } from "./client.ts";
import type { PlatformEnv } from "../types.ts";
import { readEkCertificates, type EkCertSummary } from "./ekcert.ts";
import { getHandles, getPcrBanks, getProperties } from "./operations.ts";
import { compareEventLog, formatEventLogComparison, readEventLog, type EventLogComparison } from "./eventlog-check.ts";

export interface TpmDescription {
  transport: string;
  family: string;
  manufacturer: string;
  vendor: string;
  firmware: string;
  /** Allocated banks; active ones have PCRs selected. */
  banks: { alg: string; active: boolean; pcrs: number }[];
  nvBufferMax?: number;
  maxResponse?: number;
  persistentHandles: string[];
  nvIndices: string[];
  ekCertificates: Omit<EkCertSummary, "der">[];
  /** Firmware event log replayed against the PCRs, when the log is readable. */
  eventLog?: EventLogComparison;
}

function ascii(v: number | undefined): string {
  if (v === undefined) return "";
  const s = String.fromCharCode((v >>> 24) & 0xff, (v >>> 16) & 0xff, (v >>> 8) & 0xff, v & 0xff);
  return s.replace(/[^\x20-\x7e]/g, "").trim();
}

/** "IBM", "MSFT", ... from TPM_PT_MANUFACTURER. */
export function manufacturerName(v: number | undefined): string {
  return ascii(v) || (v === undefined ? "unknown" : hex32(v));
}

/** major.minor.build.revision from TPM_PT_FIRMWARE_VERSION_1/2 (16-bit halves), plus raw hex. */
export function firmwareVersion(v1: number | undefined, v2: number | undefined): string {
  if (v1 === undefined) return "unknown";
  const parts = [v1 >>> 16, v1 & 0xffff, ...(v2 === undefined ? [] : [v2 >>> 16, v2 & 0xffff])];
  return `${parts.join(".")} (${hex32(v1)}${v2 === undefined ? "" : ` ${hex32(v2)}`})`;
}

export interface DescribeOptions {
  ekCertificates?: boolean;
  /** Platform root for the securityfs event log (default "/"); `false` skips the log. */
  eventLogRoot?: string | false;
  /** An event log to compare instead of the securityfs one (tests, `evidence --decode`). */
  eventLog?: Uint8Array;
}

export async function describeTpm(tpm: Tpm, opts: DescribeOptions = {}): Promise<TpmDescription> {
  const props = await getProperties(tpm);
  const banks = await getPcrBanks(tpm);
  const vendor = [TPM_PT.VENDOR_STRING_1, TPM_PT.VENDOR_STRING_2, TPM_PT.VENDOR_STRING_3, TPM_PT.VENDOR_STRING_4]
    .map((p) => ascii(props.get(p)))
    .join("");
  const d: TpmDescription = {
    transport: tpm.description,
    family: ascii(props.get(TPM_PT.FAMILY_INDICATOR)) || "unknown",
    manufacturer: manufacturerName(props.get(TPM_PT.MANUFACTURER)),
    vendor,
    firmware: firmwareVersion(props.get(TPM_PT.FIRMWARE_VERSION_1), props.get(TPM_PT.FIRMWARE_VERSION_2)),
    banks: banks.map((b) => ({ alg: algName(b.hash), active: b.pcrs.length > 0, pcrs: b.pcrs.length })),
    persistentHandles: (await getHandles(tpm, TPM_HR.PERSISTENT)).map(hex32),
    nvIndices: (await getHandles(tpm, TPM_HR.NV_INDEX)).map(hex32),
    ekCertificates: [],
  };
  const nvMax = props.get(TPM_PT.NV_BUFFER_MAX);
  if (nvMax !== undefined) d.nvBufferMax = nvMax;
  const maxRsp = props.get(TPM_PT.MAX_RESPONSE_SIZE);
  if (maxRsp !== undefined) d.maxResponse = maxRsp;
  if (opts.ekCertificates !== false) {
    try {
      d.ekCertificates = (await readEkCertificates(tpm)).map(({ der: _der, ...rest }) => rest);
    } catch (e) {
      d.ekCertificates = [{ index: 0, label: "EK certificates", size: 0, error: errorMessage(e) }];
    }
  }
  try {
    if (opts.eventLog) d.eventLog = await compareEventLog(tpm, opts.eventLog);
    else if (opts.eventLogRoot !== false) {
      const log = readEventLog(opts.eventLogRoot ?? "/");
      if (log) d.eventLog = await compareEventLog(tpm, log.bytes, log.path);
    }
  } catch (e) {
    d.eventLog = { path: "event log", events: 0, banks: [], error: errorMessage(e) };
  }
  return d;
}

/** Lines for a terminal. */
export function formatTpmDescription(d: TpmDescription): string[] {
  const lines = [
    `TPM ${d.family} via ${d.transport}`,
    `  manufacturer ${d.manufacturer}${d.vendor ? ` (${d.vendor})` : ""}, firmware ${d.firmware}`,
    `  PCR banks: ${d.banks.map((b) => `${b.alg}${b.active ? "" : " (inactive)"}`).join(", ") || "none"}`,
    `  persistent handles: ${d.persistentHandles.join(" ") || "none"}`,
    `  NV indices: ${d.nvIndices.join(" ") || "none"}`,
  ];
  for (const c of d.ekCertificates) {
    if (c.error) lines.push(`  ${c.label} certificate at ${hex32(c.index)}: ${c.error}`);
    else
      lines.push(
        `  ${c.label} certificate at ${hex32(c.index)}: subject "${c.subject}", issuer "${c.issuer}", valid to ${c.notAfter}, ${c.keyType}`,
      );
  }
  if (d.eventLog) lines.push(...formatEventLogComparison(d.eventLog));
  return lines;
}

/** EvidenceSource.describe of the TPM-based sources (tpm, azure-vtpm). Never throws. */
export async function describeTpmPlatform(env: PlatformEnv): Promise<string[]> {
  const root = env.paths.root;
  try {
    const d = await withTpm(
      env.tpm.spec,
      env.deadline,
      env.log,
      (tpm) => describeTpm(tpm, { eventLogRoot: root }),
      root !== "/" ? { root } : {},
    );
    return formatTpmDescription(d);
  } catch (e) {
    return [`TPM details unavailable: ${errorMessage(e)}`];
  }
}
