// Public API of the TPM client (see README.md). Other features import from here only.
export { Tpm, openTpm, withTpm, type TpmClientOptions } from "./client.ts";
export {
  getProperties,
  getPcrBanks,
  getActiveBanks,
  getHandles,
  nvBufferMax,
  pcrRead,
  pcrReadBank,
  pcrExtend,
  digestsFor,
  measureIntoPcr,
  createPrimary,
  readPublic,
  readPublicIfPresent,
  flushContext,
  withPrimary,
  evictControl,
  quote,
  nvReadPublic,
  nvReadPublicIfPresent,
  nvRead,
  nvDefine,
  nvUndefine,
  nvWrite,
  type PcrValue,
  type BankDigest,
  type NvReadOptions,
  type NvDefineOptions,
  type QuoteRequest,
  type QuoteResponse,
} from "./operations.ts";
export {
  TPM_ALG,
  TPM_RH,
  TPM_HR,
  TPM_PT,
  TPMA_NV,
  TPMA_OBJECT,
  DIGEST_SIZE,
  algName,
  hashAlgByName,
  hex32,
} from "./constants.ts";
export { TpmError, TPM_RC, decodeRc, describeRc, isTpmRc } from "./rc.ts";
export type { PcrSelection } from "./marshal.ts";
export {
  decodePublic,
  decodeQuoteAttest,
  decodeSignature,
  encodePublic,
  type TpmPublic,
  type QuoteAttest,
  type TpmSignature,
  type NvPublic,
} from "./structures.ts";
export { publicToSpkiDer, spkiPem } from "./attestation/keys.ts";
export { AK_RSA_TEMPLATE, withAttestationKey } from "./attestation/ak.ts";
export { collectTpmEvidence, type TpmEvidence } from "./attestation/evidence.ts";
export { readEkCertificates, summariseCertificate, EK_CERT_INDICES, type EkCertSummary } from "./ekcert.ts";
export { describeTpm, formatTpmDescription, type TpmDescription } from "./describe.ts";
export { tpmSource } from "./source.ts";
export { parseTpmSpec } from "./transport/index.ts";
