// TPM2_Quote codec. Keeps the exact bytes the TPM signed (TPMS_ATTEST without its TPM2B size)
// and the exact TPMT_SIGNATURE bytes, because verifiers check signatures over these bytes.
import { ByteWriter } from "../../util/reader.ts";
import { TPM_ALG, TPM_CC } from "../constants.ts";
import { buildCommand, parseResponse, writePcrSelection, type PasswordAuth, type PcrSelection } from "../marshal.ts";
import { decodeQuoteAttest, readSignature, type QuoteAttest, type TpmSignature } from "../structures.ts";
import { CvmError } from "../../util/errors.ts";

export interface QuoteRequest {
  signHandle: number;
  qualifyingData: Uint8Array;
  /** Signing scheme; omit for TPM_ALG_NULL (the key's own scheme). */
  scheme?: { scheme: number; hashAlg: number };
  selection: PcrSelection[];
  auth?: PasswordAuth;
}

export interface QuoteResponse {
  /** TPMS_ATTEST bytes (what was signed). */
  message: Uint8Array;
  attest: QuoteAttest;
  /** Marshalled TPMT_SIGNATURE bytes. */
  signatureBytes: Uint8Array;
  signature: TpmSignature;
}

export function encodeQuote(req: QuoteRequest): Uint8Array {
  if (req.qualifyingData.length > 64)
    throw new CvmError("internal", `Quote: qualifyingData of ${req.qualifyingData.length} bytes exceeds 64`);
  const w = new ByteWriter().sized16be(req.qualifyingData);
  if (req.scheme) w.u16be(req.scheme.scheme).u16be(req.scheme.hashAlg);
  else w.u16be(TPM_ALG.NULL);
  writePcrSelection(w, req.selection);
  return buildCommand({
    name: "Quote",
    code: TPM_CC.Quote,
    handles: [req.signHandle],
    auths: [req.auth ?? {}],
    params: w.finish(),
  });
}

export function decodeQuote(rsp: Uint8Array): QuoteResponse {
  const { params: r } = parseResponse(rsp, { name: "Quote", sessions: true });
  const message = r.sized16be("quoted", 1024).slice();
  const sigAt = r.offset;
  const signature = readSignature(r);
  const signatureBytes = r.buf.slice(sigAt, r.offset);
  r.end("parameters");
  return { message, attest: decodeQuoteAttest(message), signatureBytes, signature };
}
