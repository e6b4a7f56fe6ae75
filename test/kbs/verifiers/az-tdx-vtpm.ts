// trustee-style az-tdx-vtpm verifier: the vTPM checks (az-common.ts) plus the TD quote from Azure
// IMDS — quote signature and QE binding (as the tdx verifier checks them offline), and
// REPORTDATA[0:32] == SHA-256(HCL runtime claims), as trustee's verify_hcl_var_data does.
// Like ./tdx.ts it cannot check the PCK chain / TCB collateral offline.
import { parseTdxQuote } from "../../../platform/tdx/quote.ts";
import { verifyQeBinding, verifyQuoteSignature } from "../../../platform/tdx/signature.ts";
import { hex } from "../../../platform/util/bytes.ts";
import { parseAzureEvidence, verifyClaimsBinding, verifyVtpmQuote } from "./az-common.ts";
import { fail } from "./json-fields.ts";
import type { TeeVerifier } from "./types.ts";

export function makeAzTdxVtpmVerifier(tee: "az-tdx-vtpm" | "aztdxvtpm" = "az-tdx-vtpm"): TeeVerifier {
  return {
    tee,
    verify(evidence, expected, ctx) {
      const p = parseAzureEvidence(evidence, tee, "td_quote");
      const claims = verifyVtpmQuote(p, expected, ctx, tee);
      let quote;
      try {
        quote = parseTdxQuote(p.hardwareBlob);
      } catch (e) {
        fail(tee, `td_quote: ${(e as Error).message}`);
      }
      if (!verifyQuoteSignature(quote)) fail(tee, "TD quote signature does not verify with its attestation key");
      if (verifyQeBinding(quote) === false) fail(tee, "TD quote's QE report does not bind its attestation key");
      verifyClaimsBinding(quote.body.reportData, p.hcl, tee, "TD quote");
      return { ...claims, mr_td: hex(quote.body.mrTd), td_report_data: hex(quote.body.reportData) };
    },
  };
}

export const verifier: TeeVerifier = makeAzTdxVtpmVerifier();
export const legacyVerifier: TeeVerifier = makeAzTdxVtpmVerifier("aztdxvtpm");
