// Shared checks of trustee's az-snp-vtpm / az-tdx-vtpm verifiers (docs/spec/kbs-protocol.md §4.5–4.6,
// trustee deps/verifier/src/az_{snp,tdx}_vtpm): the vTPM quote is signed by the HCL report's
// HCLAkPub, its extraData is exactly the 48-byte runtime digest, the PCRs hash to its pcrDigest,
// (v2) the HCL user-data starts with hex(digest), and PCR8 carries init-data when given.
// The hardware-specific part (SNP report + VCEK, TD quote) lives in az-snp-vtpm.ts / az-tdx-vtpm.ts.
import * as crypto from "node:crypto";
import { bytesEqual, hex } from "../../../platform/util/bytes.ts";
import { parseHclReport, runtimeClaimsDigest, userDataCarries, type HclReport } from "../../../platform/azure/hcl.ts";
import { decodeQuoteAttest, type QuoteAttest } from "../../../platform/tpm/structures.ts";
import { TPM_ALG } from "../../../platform/tpm/constants.ts";
import { fail, jsonObject as obj } from "./json-fields.ts";
import type { TeeClaims, VerifyContext } from "./types.ts";

/** URL-safe base64 WITH padding, canonical (serde_with Base64<UrlSafe, Padded>). */
const B64URL_PADDED = /^(?:[A-Za-z0-9_-]{4})*(?:[A-Za-z0-9_-]{2}==|[A-Za-z0-9_-]{3}=)?$/;
const HEX = /^(?:[0-9a-fA-F]{2})*$/;
const MAX_BLOB = 64 * 1024;

export interface ParsedAzureEvidence {
  version: number;
  signature: Uint8Array;
  message: Uint8Array;
  attest: QuoteAttest;
  pcrs: Uint8Array[];
  hcl: HclReport;
  /** vcek (SNP) or td_quote (TDX) bytes. */
  hardwareBlob: Uint8Array;
}

function hexField(v: unknown, tee: string, what: string): Uint8Array {
  if (typeof v !== "string" || !HEX.test(v) || v.length > 2 * MAX_BLOB)
    fail(tee, `${what} must be an even-length hex string`);
  return new Uint8Array(Buffer.from(v, "hex"));
}

function b64Field(v: unknown, tee: string, what: string): Uint8Array {
  if (typeof v !== "string" || !B64URL_PADDED.test(v) || v.length > 2 * MAX_BLOB)
    fail(tee, `${what} must be URL-safe base64 with padding`);
  return new Uint8Array(Buffer.from(v, "base64url"));
}

/** Parse the evidence JSON; `hwField` is "vcek" or "td_quote". Versions 1 and 2 (current) are accepted, as trustee does. */
export function parseAzureEvidence(evidence: unknown, tee: string, hwField: "vcek" | "td_quote"): ParsedAzureEvidence {
  const ev = obj(evidence, tee, "evidence");
  const version = ev.version;
  if (version !== 1 && version !== 2)
    fail(tee, `unsupported version ${JSON.stringify(version)} (this verifier takes 1 or 2)`);
  const q = obj(ev.tpm_quote, tee, "tpm_quote");
  const signature = hexField(q.signature, tee, "tpm_quote.signature");
  const message = hexField(q.message, tee, "tpm_quote.message");
  if (!Array.isArray(q.pcrs)) fail(tee, "tpm_quote.pcrs must be an array");
  const pcrs = q.pcrs.map((p, i) => hexField(p, tee, `tpm_quote.pcrs[${i}]`));
  const hclRaw = b64Field(ev.hcl_report, tee, "hcl_report");
  const hardwareBlob = b64Field(ev[hwField], tee, hwField);
  let attest: QuoteAttest;
  let hcl: HclReport;
  try {
    attest = decodeQuoteAttest(message);
    hcl = parseHclReport(hclRaw);
  } catch (e) {
    fail(tee, (e as Error).message);
  }
  return { version, signature, message, attest, pcrs, hcl, hardwareBlob };
}

/** The TPM-side checks shared by both Azure TEEs; returns the PCR claims. */
export function verifyVtpmQuote(
  p: ParsedAzureEvidence,
  expected: Uint8Array,
  ctx: Pick<VerifyContext, "initData">,
  tee: string,
): TeeClaims {
  const ak = p.hcl.akPub;
  if (!ak) fail(tee, "HCL runtime claims have no HCLAkPub key");
  let key: crypto.KeyObject;
  try {
    key = crypto.createPublicKey({ key: { kty: "RSA", n: ak.n, e: ak.e }, format: "jwk" });
  } catch (e) {
    fail(tee, `HCLAkPub is not a usable RSA key: ${(e as Error).message}`);
  }
  if (!crypto.verify("sha256", p.message, { key, padding: crypto.constants.RSA_PKCS1_PADDING }, p.signature))
    fail(tee, "vTPM quote signature does not verify with HCLAkPub");
  if (!bytesEqual(p.attest.extraData, expected))
    fail(tee, `vTPM quote nonce ${hex(p.attest.extraData)} != expected report data ${hex(expected)}`);
  if (p.pcrs.some((x) => x.length !== 32)) fail(tee, "every PCR must be a 32-byte SHA-256 value");
  const selected = p.attest.pcrSelect.flatMap((s) => (s.hash === TPM_ALG.SHA256 ? s.pcrs : []));
  if (p.attest.pcrSelect.some((s) => s.hash !== TPM_ALG.SHA256 && s.pcrs.length))
    fail(tee, "quote selects a PCR bank other than SHA-256");
  if (selected.length !== p.pcrs.length)
    fail(tee, `quote selects ${selected.length} PCRs, evidence carries ${p.pcrs.length}`);
  const digest = crypto.createHash("sha256").update(Buffer.concat(p.pcrs)).digest();
  if (!bytesEqual(digest, p.attest.pcrDigest)) fail(tee, "digest of the PCRs does not match the quote's pcrDigest");
  if (p.version >= 2 && !userDataCarries(p.hcl, expected))
    fail(
      tee,
      `HCL user-data ${p.hcl.userData ?? "(absent)"} does not start with the expected report data ${hex(expected)}`,
    );
  if (ctx.initData) {
    if (p.pcrs.length < 9) fail(tee, "init-data given but PCR8 is missing");
    if (ctx.initData.digest.length !== 32) fail(tee, "init-data digest must be 32 bytes (sha256) for vTPM PCR8");
    const want = crypto
      .createHash("sha256")
      .update(Buffer.concat([new Uint8Array(32), ctx.initData.digest]))
      .digest();
    if (!bytesEqual(p.pcrs[8]!, want)) fail(tee, `PCR8 ${hex(p.pcrs[8]!)} != SHA-256(0^32 ‖ init-data digest)`);
  }
  const claims: TeeClaims = { report_data: hex(expected) };
  p.pcrs.forEach((v, i) => (claims[`pcr${String(selected[i]).padStart(2, "0")}`] = hex(v)));
  if (ctx.initData) claims.init_data = hex(p.pcrs[8]!);
  return claims;
}

/** The hardware report's REPORT_DATA[0:32] must be SHA-256 of the HCL runtime claims bytes. */
export function verifyClaimsBinding(reportData: Uint8Array, hcl: HclReport, tee: string, what: string): void {
  const want = runtimeClaimsDigest(hcl);
  if (!bytesEqual(reportData.subarray(0, 32), want))
    fail(
      tee,
      `${what} report_data[0..32] ${hex(reportData.subarray(0, 32))} != SHA-256(HCL runtime claims) ${hex(want)}`,
    );
}
