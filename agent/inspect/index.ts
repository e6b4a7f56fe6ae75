// `cvm-unlock inspect`: decode an attestation artefact for people (or as JSON). Pure: bytes in,
// Inspection out; the command does the file I/O.
import { b64 } from "../../platform/util/bytes.ts";
import { CvmError } from "../../platform/util/errors.ts";
import { parseTdxQuote } from "../../platform/tdx/quote.ts";
import { detectType, unwrapText } from "./detect.ts";
import { inspectEvidenceJson } from "./evidence.ts";
import { inspectCcel, inspectCcelTable, inspectEventLog } from "./eventlog.ts";
import { inspectHclReport } from "./hcl.ts";
import { INSPECT_TYPES, type InspectType, type Inspection } from "./model.ts";
import { inspectSnpCerts, inspectSnpReport, snpTrusteeEvidence } from "./snp.ts";
import { inspectTdReport, inspectTdxQuote } from "./tdx.ts";

const DECODERS: Record<InspectType, (b: Uint8Array) => Inspection> = {
  "snp-report": inspectSnpReport,
  "tdx-quote": inspectTdxQuote,
  "tdx-report": inspectTdReport,
  eventlog: inspectEventLog,
  ccel: inspectCcel,
  "ccel-table": inspectCcelTable,
  "snp-certs": inspectSnpCerts,
  "hcl-report": inspectHclReport,
  "evidence-json": inspectEvidenceJson,
};

export interface ResolvedInput {
  type: InspectType;
  /** The bytes to decode (hex/base64 text already decoded). */
  bytes: Uint8Array;
  /** Set when the input was text in this encoding. */
  encoding?: "hex" | "base64";
}

/** Decide what the input is: forced by --type, detected from the bytes, or from hex/base64 text. */
export function resolveInput(bytes: Uint8Array, forced?: string): ResolvedInput {
  if (forced !== undefined) {
    if (!(INSPECT_TYPES as readonly string[]).includes(forced))
      throw new CvmError("usage", `--type must be one of ${INSPECT_TYPES.join(", ")}`);
    const type = forced as InspectType;
    // A forced binary type given as text: decode the text if that makes it recognisable as that type.
    const text = detectType(bytes) === undefined ? unwrapText(bytes) : undefined;
    return text && detectType(text.bytes) === type ? { type, ...text } : { type, bytes };
  }
  const t = detectType(bytes);
  if (t) return { type: t, bytes };
  const text = unwrapText(bytes);
  if (text) return { type: detectType(text.bytes)!, ...text };
  throw new CvmError("evidence", `cannot tell what this ${bytes.length}-byte input is`, {
    hint: `force it with --type ${INSPECT_TYPES.join("|")}`,
  });
}

/** Type only (see resolveInput). */
export function resolveType(bytes: Uint8Array, forced?: string): InspectType {
  return resolveInput(bytes, forced).type;
}

export function inspectBytes(bytes: Uint8Array, type: InspectType): Inspection {
  return DECODERS[type](bytes);
}

/** trustee's primary_evidence JSON for an SNP report or a TDX quote (without event log / certs). */
export function trusteeEvidence(bytes: Uint8Array, type: InspectType): string {
  if (type === "snp-report") return snpTrusteeEvidence(bytes);
  if (type === "tdx-quote") {
    const q = parseTdxQuote(bytes);
    return JSON.stringify({ cc_eventlog: null, quote: b64(bytes.subarray(0, q.length)) }) + "\n";
  }
  throw new CvmError("usage", `--trustee applies to snp-report and tdx-quote inputs, not ${type}`);
}
