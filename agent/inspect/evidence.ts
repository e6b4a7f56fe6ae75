// `inspect` for trustee evidence JSON: a `tdx` primary_evidence ({"cc_eventlog","quote"}), an `snp`
// one ({"attestation_report","cert_chain"}), or a whole /attest body whose tee-evidence carries
// one of them. For TDX it also replays the event log against the quote's RTMRs the way trustee
// does — the first thing to look at when a KBS refuses TDX evidence.
import { fromB64, hex } from "../../platform/util/bytes.ts";
import { CvmError, ParseError } from "../../platform/util/errors.ts";
import { parseCcelLog } from "../../platform/eventlog/index.ts";
import { parseTdxQuote } from "../../platform/tdx/quote.ts";
import { ccelRtmrMismatches } from "../../platform/tdx/rtmr.ts";
import { parseSnpEvidenceJson } from "../../platform/snp/json.ts";
import { encodeSnpReport } from "../../platform/snp/report.ts";
import { certTypeName } from "../../platform/snp/certs.ts";
import { inspectCcel } from "./eventlog.ts";
import { inspectSnpReport } from "./snp.ts";
import { inspectTdxQuote } from "./tdx.ts";
import type { Inspection, Row } from "./model.ts";

const STRUCT = "evidence JSON";

function asObject(v: unknown): Record<string, unknown> | undefined {
  return v !== null && typeof v === "object" && !Array.isArray(v) ? (v as Record<string, unknown>) : undefined;
}

/** The primary evidence object inside whatever JSON we were given, if it has a known shape. */
export function findPrimaryEvidence(
  json: unknown,
): { kind: "tdx" | "snp"; value: Record<string, unknown> } | undefined {
  let o = asObject(json);
  const te = asObject(o?.["tee-evidence"]);
  if (te) {
    // kbs-protocol 0.4.0: tee-evidence {primary_evidence, additional_evidence}; older bodies put it directly.
    o = asObject(te.primary_evidence) ?? te;
  }
  if (!o) return undefined;
  if (typeof o.quote === "string") return { kind: "tdx", value: o };
  if (asObject(o.attestation_report)) return { kind: "snp", value: o };
  return undefined;
}

export function parseJsonInput(bytes: Uint8Array): unknown {
  try {
    return JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(bytes));
  } catch (e) {
    throw new ParseError(STRUCT, "json", 0, `not UTF-8 JSON: ${(e as Error).message}`);
  }
}

function b64Field(o: Record<string, unknown>, name: string): Uint8Array {
  const v = o[name];
  if (typeof v !== "string") throw new ParseError(STRUCT, name, 0, "must be a base64 string");
  return fromB64(v, name, { structure: STRUCT });
}

function inspectTdxEvidence(o: Record<string, unknown>): Inspection {
  const quoteBytes = b64Field(o, "quote");
  const qi = inspectTdxQuote(quoteBytes);
  const el = o.cc_eventlog;
  const warnings = [...qi.warnings];
  const sections = [...qi.sections];
  const json: Record<string, unknown> = { quote: qi.json, cc_eventlog: null };
  if (el === null || el === undefined || el === "") {
    sections.push({
      title: "event log",
      rows: [["cc_eventlog", "absent (trustee only warns; RTMRs are then unchecked)"]],
    });
  } else {
    const logBytes = b64Field(o, "cc_eventlog");
    const li = inspectCcel(logBytes);
    const quote = parseTdxQuote(quoteBytes);
    const mismatches = new Map(ccelRtmrMismatches(parseCcelLog(logBytes), quote).map((m) => [m.index, m]));
    const rows: Row[] = [];
    const match: Record<string, boolean> = {};
    for (let i = 0; i < 4; i++) {
      const bad = mismatches.get(i);
      match[`RTMR${i}`] = !bad;
      rows.push([`RTMR${i}`, bad ? `MISMATCH: log replays to ${hex(bad.replayed)}` : "replay matches the quote"]);
      if (bad) warnings.push(`cc_eventlog does not replay to the quote's RTMR${i}: trustee will refuse this evidence`);
    }
    sections.push(
      { title: "event log vs quote (trustee's replay)", rows },
      ...li.sections.map((s) => ({ ...s, title: `cc_eventlog: ${s.title}` })),
    );
    warnings.push(...li.warnings);
    json.cc_eventlog = { ...(li.json as object), rtmr_match: match };
  }
  return {
    type: "evidence-json",
    summary: `trustee tdx evidence: ${qi.summary}${el ? " with cc_eventlog" : ""}`,
    sections,
    warnings,
    json: { tee: "tdx", ...json },
  };
}

function inspectSnpEvidence(o: Record<string, unknown>): Inspection {
  const { report, certChain } = parseSnpEvidenceJson(o);
  const si = inspectSnpReport(encodeSnpReport(report));
  const lines =
    certChain === null
      ? ["null (the KBS fetches the VCEK from AMD KDS or its cache)"]
      : certChain.map((c) => `${certTypeName(c.cert_type)}: ${c.data.length} bytes DER`);
  return {
    type: "evidence-json",
    summary: `trustee snp evidence: ${si.summary}`,
    sections: [...si.sections, { title: "cert_chain", rows: [], lines }],
    warnings: si.warnings,
    json: {
      tee: "snp",
      ...(si.json as object),
      cert_chain: certChain === null ? null : certChain.map((c) => ({ cert_type: c.cert_type, length: c.data.length })),
    },
  };
}

export function inspectEvidenceJson(bytes: Uint8Array): Inspection {
  const found = findPrimaryEvidence(parseJsonInput(bytes));
  if (!found)
    throw new CvmError(
      "evidence",
      "this JSON is neither tdx evidence {cc_eventlog, quote}, snp evidence {attestation_report, cert_chain}, nor an /attest body carrying one",
    );
  return found.kind === "tdx" ? inspectTdxEvidence(found.value) : inspectSnpEvidence(found.value);
}
