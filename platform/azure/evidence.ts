// trustee's az-snp-vtpm / az-tdx-vtpm evidence, version 2 (docs/spec/kbs-protocol.md §4.5–4.6):
//   {"version":2,"tpm_quote":{"signature":hex,"message":hex,"pcrs":[hex x24]},
//    "hcl_report":b64url-padded, "vcek":b64url-padded | "td_quote":b64url-padded}
// `signature` is the raw RSASSA signature (no TPMT_SIGNATURE header), unlike the `tpm` TEE.
import { b64urlPadded, hex } from "../util/bytes.ts";
import { EVIDENCE_VERSION } from "./constants.ts";

export interface AzureQuote {
  /** Raw RSASSA-PKCS1v1_5 signature bytes. */
  signature: Uint8Array;
  /** TPMS_ATTEST exactly as signed. */
  message: Uint8Array;
  /** SHA-256 PCR0..23, read after the quote. */
  pcrs: Uint8Array[];
}

export interface AzureSnpEvidence {
  version: number;
  tpm_quote: { signature: string; message: string; pcrs: string[] };
  hcl_report: string;
  vcek: string;
}
export type AzureTdxEvidence = Omit<AzureSnpEvidence, "vcek"> & { td_quote: string };

function tpmQuoteJson(q: AzureQuote): AzureSnpEvidence["tpm_quote"] {
  return { signature: hex(q.signature), message: hex(q.message), pcrs: q.pcrs.map(hex) };
}

export function snpEvidence(quote: AzureQuote, hclReport: Uint8Array, vcekDer: Uint8Array): AzureSnpEvidence {
  return {
    version: EVIDENCE_VERSION,
    tpm_quote: tpmQuoteJson(quote),
    hcl_report: b64urlPadded(hclReport),
    vcek: b64urlPadded(vcekDer),
  };
}

export function tdxEvidence(quote: AzureQuote, hclReport: Uint8Array, tdQuote: Uint8Array): AzureTdxEvidence {
  return {
    version: EVIDENCE_VERSION,
    tpm_quote: tpmQuoteJson(quote),
    hcl_report: b64urlPadded(hclReport),
    td_quote: b64urlPadded(tdQuote),
  };
}
