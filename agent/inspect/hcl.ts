// `inspect` for Azure HCL reports: header, runtime claims and the embedded hardware report. The
// codec is platform/azure/hcl.ts; SNP/TDX decoding reuses the other inspectors' sections.
import { hex } from "../../platform/util/bytes.ts";
import { parseHclReport, reportDataBindsClaims } from "../../platform/azure/hcl.ts";
import { decodeSnpReport } from "../../platform/snp/report.ts";
import { parseTdReport } from "../../platform/tdx/tdreport.ts";
import { snpReportSections } from "./snp.ts";
import { tdReportJson, tdReportSections } from "./tdx.ts";
import type { Inspection, Row, Section } from "./model.ts";

const HASH_TYPES: Record<number, string> = { 1: "SHA-256", 2: "SHA-384", 3: "SHA-512" };
const REQUEST_TYPES: Record<number, string> = { 0: "invalid", 1: "key release", 2: "AK certificate" };

export function inspectHclReport(bytes: Uint8Array): Inspection {
  const h = parseHclReport(bytes);
  const binds = reportDataBindsClaims(h);
  const warnings = binds
    ? []
    : ["REPORT_DATA[0:32] is not SHA-256 of the runtime claims: the claims are not bound to the hardware report"];
  const rows: Row[] = [
    ["version", String(h.version)],
    ["report size", `${h.reportSize} of ${bytes.length} bytes`],
    ["request type", `${h.requestType} (${REQUEST_TYPES[h.requestType] ?? "unknown"})`],
    ["hardware report", h.tee === "snp" ? "SEV-SNP attestation report" : "TDX TDREPORT"],
    ["report data hash", `${h.hashType} (${HASH_TYPES[h.hashType] ?? "unknown"})`],
    ["claims binding", binds ? "REPORT_DATA[0:32] == SHA-256(runtime claims)" : "MISMATCH"],
    ["AK public key", h.akPub ? `RSA, n ${h.akPub.n.slice(0, 24)}…` : "absent"],
    ["user-data", h.userData ?? "absent"],
  ];
  const claimsText = JSON.stringify(h.claims, null, 2).split("\n");
  let hw: Section[];
  let hwJson: unknown;
  if (h.tee === "snp") {
    const r = decodeSnpReport(h.hardwareReport);
    hw = snpReportSections(r).map((s) => ({ ...s, title: `embedded ${s.title}` }));
    hwJson = { measurement: hex(r.measurement), report_data: hex(r.report_data), version: r.version, vmpl: r.vmpl };
  } else {
    const t = parseTdReport(h.hardwareReport);
    hw = tdReportSections(t).map((s) => ({ ...s, title: `embedded ${s.title}` }));
    hwJson = tdReportJson(t);
  }
  return {
    type: "hcl-report",
    summary: `Azure HCL report v${h.version} with ${h.tee === "snp" ? "an SEV-SNP report" : "a TDX TDREPORT"}`,
    sections: [{ title: "HCL report", rows }, { title: "runtime claims", rows: [], lines: claimsText }, ...hw],
    warnings,
    json: {
      version: h.version,
      report_size: h.reportSize,
      request_type: h.requestType,
      tee: h.tee,
      hash_type: h.hashType,
      claims_bound: binds,
      runtime_claims: h.claims,
      hardware_report: hwJson,
    },
  };
}
