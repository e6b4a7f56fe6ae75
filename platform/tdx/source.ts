// The `tdx` evidence source (docs/spec/kbs-protocol.md §4.3): a TD quote from configfs-tsm (provider
// tdx_guest) with REPORTDATA = runtime digest ‖ zeros, and the firmware's CCEL event log.
// Evidence: {"cc_eventlog": base64 | null, "quote": base64}, both base64 STANDARD.
import * as path from "node:path";
import { probeTsmProvider, requestTsmReport, INBLOB_SIZE } from "../tsm/index.ts";
import type { EvidenceSource, PlatformEnv, Probe } from "../types.ts";
import { b64, bytesEqual, fitTo, hex } from "../util/bytes.ts";
import { CvmError } from "../util/errors.ts";
import { pathExists, readFileIfPresent } from "../util/files.ts";
import { parseTdxQuote, type TdxQuote } from "./quote.ts";
import { ccelRtmrMismatches } from "./rtmr.ts";
import { verifyQuoteSignature } from "./signature.ts";
import { readCcel, type CcelEvidence } from "./ccel-file.ts";

export const TDX_PROVIDER = "tdx_guest";
const DRIVER_HINT =
  "load the TDX guest driver: modprobe tdx-guest (CONFIG_TDX_GUEST_DRIVER), and use Linux >= 6.7 with CONFIG_TSM_REPORTS for quotes";

/** The CPU flag the kernel sets in a TD (X86_FEATURE_TDX_GUEST), even without the driver. */
function cpuSaysTdxGuest(root: string): boolean {
  try {
    const text = new TextDecoder().decode(
      readFileIfPresent(path.join(root, "proc/cpuinfo"), { what: "/proc/cpuinfo", max: 4 * 1024 * 1024 }) ??
        new Uint8Array(),
    );
    return /^flags\s*:.*\btdx_guest\b/m.test(text);
  } catch {
    return false;
  }
}

async function probe(env: PlatformEnv): Promise<Probe> {
  const tsm = await probeTsmProvider(env);
  const devNode = path.join(env.paths.root, "dev/tdx_guest");
  if (tsm.available && tsm.provider === TDX_PROVIDER)
    return {
      source: "tdx",
      present: true,
      tee: "tdx",
      reason: `configfs-tsm provider ${TDX_PROVIDER}`,
      details: { tsm_provider: TDX_PROVIDER },
    };
  if (tsm.available && tsm.provider !== undefined)
    return {
      source: "tdx",
      present: false,
      reason: `configfs-tsm provider is ${tsm.provider}, not ${TDX_PROVIDER}`,
      details: { tsm_provider: tsm.provider },
    };
  if (pathExists(devNode))
    // A TD with the driver but no configfs-tsm: we are on TDX, so take it and let collect() say
    // precisely what is missing rather than silently attesting with something weaker.
    return {
      source: "tdx",
      present: true,
      tee: "tdx",
      reason: `/dev/tdx_guest present, but configfs-tsm is not (${tsm.reason})`,
      hint: DRIVER_HINT,
    };
  if (cpuSaysTdxGuest(env.paths.root))
    return {
      source: "tdx",
      present: false,
      reason: "this is a TDX guest (cpu flag tdx_guest) but the tdx-guest driver is not loaded",
      hint: DRIVER_HINT,
    };
  return {
    source: "tdx",
    present: false,
    reason: `no configfs-tsm ${TDX_PROVIDER} provider and no /dev/tdx_guest (${tsm.reason})`,
    hint: `on a TDX guest: ${DRIVER_HINT}`,
  };
}

/** Fail closed when the quote does not carry exactly the REPORTDATA we asked for. */
export function checkReportData(quote: TdxQuote, inblob: Uint8Array): void {
  if (!bytesEqual(quote.body.reportData, inblob))
    throw new CvmError(
      "evidence",
      `TDX quote REPORTDATA ${hex(quote.body.reportData).slice(0, 32)}… is not the runtime digest we wrote (${hex(inblob).slice(0, 32)}…); refusing the quote`,
    );
}

/** Local diagnosis only (the verifier decides): does the CCEL replay to the quote's RTMRs? */
function compareRtmrs(env: PlatformEnv, quote: TdxQuote, ccel: CcelEvidence): void {
  try {
    const bad = ccelRtmrMismatches(ccel.log, quote).map((m) => `RTMR${m.index}`);
    if (bad.length)
      env.log.warning(
        `CCEL does not replay to the quote's ${bad.join(", ")}; the KBS will likely refuse this evidence`,
      );
    else env.log.debug("CCEL replays to the quote's RTMR0..3", { events: ccel.log.events.length });
  } catch (e) {
    env.log.warning(`CCEL replay failed: ${(e as Error).message}`);
  }
}

export const tdxSource: EvidenceSource = {
  id: "tdx",
  insecure: false,
  probe,
  async collect(env, req) {
    if (req.runtimeDigest.length > INBLOB_SIZE)
      throw new CvmError(
        "internal",
        `runtime digest of ${req.runtimeDigest.length} bytes does not fit TDX REPORTDATA (64)`,
      );
    const inblob = fitTo(req.runtimeDigest, INBLOB_SIZE); // digest ‖ zeros (trustee regularize_data)
    const report = await requestTsmReport(env, { inblob, expectProvider: TDX_PROVIDER });
    const quote = parseTdxQuote(report.outblob);
    checkReportData(quote, inblob);
    // A genuine quote always verifies against its own attestation key; a broken one would only be
    // refused later by the KBS with a vaguer message.
    if (!verifyQuoteSignature(quote))
      throw new CvmError(
        "evidence",
        "the TDX quote from configfs-tsm has a signature that does not verify with its own attestation key; refusing it",
      );
    const quoteBytes = report.outblob.subarray(0, quote.length); // drop buffer padding after sig data
    const t0 = Date.now();
    const ccel = readCcel(env.paths.root);
    const ccelMs = Date.now() - t0;
    if (ccel) compareRtmrs(env, quote, ccel);
    else env.log.info("no CCEL event log published by the firmware; sending cc_eventlog null");
    env.log.debug("TDX quote collected", {
      version: quote.header.version,
      bytes: quoteBytes.length,
      ccel_events: ccel?.log.events.length,
    });
    return {
      tee: "tdx",
      primary: { cc_eventlog: ccel ? b64(ccel.wire) : null, quote: b64(quoteBytes) },
      timings: { quote: report.ms, ccel: ccelMs },
    };
  },
};
