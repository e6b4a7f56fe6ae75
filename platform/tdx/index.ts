// Public surface of the TDX module: quote and TDREPORT codecs (pure), offline signature checks,
// trustee claim shapes, and the `tdx` evidence source.
export {
  parseTdxQuote,
  encodeTdxQuote,
  encodeSignedPart,
  encodeSignatureData,
  encodeQeCertification,
  encodeBody,
  decodeTdAttributes,
  TDX_TEE_TYPE,
  INTEL_QE_VENDOR_ID,
  type TdxQuote,
  type TdxQuoteHeader,
  type TdxQuoteBody,
  type TdxSignatureData,
  type QeReportCertification,
  type TdAttributes,
} from "./quote.ts";
export { parseTdReport, TD_REPORT_SIZE, type TdReport } from "./tdreport.ts";
export { verifyQuoteSignature, verifyQeBinding, pckChainPem } from "./signature.ts";
export { trusteeQuoteClaims, trusteeEventClaims } from "./claims.ts";
export { ccelRtmrMismatches } from "./rtmr.ts";
export { readCcel, ccelWire, CCEL_DATA_PATH, type CcelEvidence } from "./ccel-file.ts";
export { tdxSource, checkReportData, TDX_PROVIDER } from "./source.ts";
