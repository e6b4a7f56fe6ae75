// SEV-SNP: the report codec, trustee's JSON form, the host certificate table, signature checking,
// /dev/sev-guest, and the `snp` evidence source.
export {
  decodeSnpReport,
  encodeSnpReport,
  generationFromCpuid,
  reportLayout,
  SNP_REPORT_SIZE,
  SNP_SIGNED_SIZE,
} from "./report.ts";
export type { SnpReport, TcbVersion, FirmwareVersion, CpuGeneration } from "./report.ts";
export {
  parseSnpEvidenceJson,
  snpEvidenceJsonText,
  snpEvidenceJsonValue,
  snpReportFromJson,
  snpReportToJsonText,
} from "./json.ts";
export type { CertChainEntry } from "./json.ts";
export { CERT_GUIDS, certTypeName, encodeCertTable, parseCertTable } from "./certs.ts";
export type { CertTableEntry, CertType } from "./certs.ts";
export { snpSignatureCompact, vekPublicKey, verifySnpReportSignature } from "./verify.ts";
export { makeSnpSource, snpSource, SEV_PROVIDER } from "./source.ts";
export type { SnpSourceOptions } from "./source.ts";
