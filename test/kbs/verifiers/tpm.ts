// trustee's `tpm` verifier (docs/spec/kbs-protocol.md §4.4; T:deps/verifier/src/tpm/mod.rs @78962cd):
//  - evidence {ak_public: b64 DER SPKI (RSA), tpm_quote: {signature: b64 TPMT_SIGNATURE, message: b64 TPMS_ATTEST, pcrs: [hex]}}
//  - optional trusted-AK list (trustee compares SHA-256 of the DER SPKI)
//  - TPMT_SIGNATURE must be RSASSA; RSA PKCS#1 v1.5 SHA-256 over `message` with ak_public
//  - TPMS_ATTEST magic/type; pcrDigest == SHA-256(concat(pcrs)); selection exactly sha256:0-23
//  - extraData == expected report data resized to 32 bytes (the 48-byte digest truncated)
//  - with init-data: PCR8 == SHA-256(0^32 ‖ init-data digest)
// Written independently of platform/tpm/attestation (only the pure structure decoders are shared),
// so a bug in the agent's evidence builder is not mirrored here.
import { createHash, createPublicKey, createVerify, type KeyObject } from "node:crypto";
import { bytesEqual, concat, fitTo, fromB64, fromHex, hex } from "../../../platform/util/bytes.ts";
import { TPM_ALG } from "../../../platform/tpm/constants.ts";
import { decodeQuoteAttest, decodeSignature } from "../../../platform/tpm/structures.ts";
import type { TeeClaims, TeeVerifier } from "./types.ts";
import { fail as failFor, jsonObject } from "./json-fields.ts";

/** trustee resizes the expected report data to this many bytes before comparing with extraData. */
export const TPM_REPORT_DATA_SIZE = 32;
const INITDATA_PCR = 8;

export interface TpmVerifyOptions {
  /** Trusted AKs as PEM or base64 DER SPKI; when given, the evidence's AK must be one of them. */
  trustedAks?: string[];
  /** init-data digest (SHA-256) that PCR8 must carry, as trustee checks when init-data was sent. */
  initDataDigest?: Uint8Array;
}

const TEE = "tpm";
function fail(problem: string): never {
  return failFor(TEE, problem);
}

function str(o: Record<string, unknown>, key: string, where: string): string {
  const v = o[key];
  if (typeof v !== "string") fail(`${where}.${key} must be a string`);
  return v;
}

function obj(v: unknown, where: string): Record<string, unknown> {
  return jsonObject(v, TEE, where);
}

function b64(s: string, what: string): Uint8Array {
  try {
    return fromB64(s, what);
  } catch (e) {
    fail((e as Error).message);
  }
}

function spkiDer(key: string): Uint8Array {
  const k = key.includes("-----BEGIN")
    ? createPublicKey(key)
    : createPublicKey({ key: Buffer.from(key, "base64"), format: "der", type: "spki" });
  return new Uint8Array(k.export({ type: "spki", format: "der" }));
}

const sha256 = (b: Uint8Array) => new Uint8Array(createHash("sha256").update(b).digest());

export function verifyTpmEvidence(
  evidence: unknown,
  expectedReportData: Uint8Array,
  opts: TpmVerifyOptions = {},
): TeeClaims {
  const ev = obj(evidence, "evidence");
  const akB64 = str(ev, "ak_public", "evidence");
  const q = obj(ev.tpm_quote, "evidence.tpm_quote");
  const sigBytes = b64(str(q, "signature", "tpm_quote"), "tpm_quote.signature");
  const message = b64(str(q, "message", "tpm_quote"), "tpm_quote.message");
  if (!Array.isArray(q.pcrs)) fail("tpm_quote.pcrs must be an array");
  const pcrs = q.pcrs.map((p, i) => {
    if (typeof p !== "string" || p.length !== 64) fail(`PCR ${i} should be 64 hex characters`);
    try {
      return fromHex(p, `PCR ${i}`);
    } catch (e) {
      fail((e as Error).message);
    }
  });

  const akDer = b64(akB64, "ak_public");
  if (opts.trustedAks) {
    const trusted = new Set(opts.trustedAks.map((k) => hex(sha256(spkiDer(k)))));
    if (!trusted.has(hex(sha256(akDer)))) fail("the provided AK public key is not in the list of trusted keys");
  }
  let akKey: KeyObject;
  try {
    akKey = createPublicKey({ key: Buffer.from(akDer), format: "der", type: "spki" });
  } catch (e) {
    fail(`ak_public is not a DER SubjectPublicKeyInfo: ${(e as Error).message}`);
  }
  if (akKey.asymmetricKeyType !== "rsa") fail(`the AK must be RSA, got ${akKey.asymmetricKeyType}`);

  let sig;
  try {
    sig = decodeSignature(sigBytes);
  } catch (e) {
    fail(`cannot unmarshal TPMT_SIGNATURE: ${(e as Error).message}`);
  }
  if (sig.sigAlg !== TPM_ALG.RSASSA) fail(`unsupported signature type 0x${sig.sigAlg.toString(16)}, expected RSA-SSA`);
  if (sig.hashAlg !== TPM_ALG.SHA256) fail(`RSASSA hash 0x${sig.hashAlg.toString(16)} is not SHA-256`);
  if (!createVerify("sha256").update(message).verify(akKey, Buffer.from(sig.sig)))
    fail("TPM quote signature verification failed");

  let attest;
  try {
    attest = decodeQuoteAttest(message);
  } catch (e) {
    fail(`cannot unmarshal TPMS_ATTEST: ${(e as Error).message}`);
  }
  const sel = attest.pcrSelect;
  const all24 = Array.from({ length: 24 }, (_, i) => i).join(",");
  if (sel.length !== 1 || sel[0]!.hash !== TPM_ALG.SHA256 || sel[0]!.pcrs.join(",") !== all24)
    fail(
      `quote PCR selection must be exactly sha256:0-23, got ${sel.map((s) => `0x${s.hash.toString(16)}:[${s.pcrs.join(",")}]`).join(" ")}`,
    );
  if (pcrs.length !== 24) fail(`expected 24 PCR values (sha256:0-23), got ${pcrs.length}`);
  if (!bytesEqual(sha256(concat(...pcrs)), attest.pcrDigest)) fail("digest of PCRs does not match digest in Quote");
  if (!bytesEqual(attest.extraData, fitTo(expectedReportData, TPM_REPORT_DATA_SIZE)))
    fail(`TPM quote nonce ${hex(attest.extraData)} doesn't match expected report_data`);
  if (opts.initDataDigest) {
    if (opts.initDataDigest.length !== 32)
      fail(`init-data digest must be SHA-256 (32 bytes) for tpm, got ${opts.initDataDigest.length}`);
    const want = sha256(concat(new Uint8Array(32), opts.initDataDigest));
    if (!bytesEqual(want, pcrs[INITDATA_PCR]!)) fail(`TPM PCR[${INITDATA_PCR}] doesn't match expected initdata hash`);
  }

  const claims: TeeClaims = {
    init_data: hex(pcrs[INITDATA_PCR]!),
    report_data: hex(attest.extraData),
    ak_public: akB64,
  };
  pcrs.forEach((p, i) => (claims[`pcr${String(i).padStart(2, "0")}`] = hex(p)));
  return claims;
}

/** Trusted AKs for the test KBS, from $CVM_TEST_TPM_TRUSTED_AKS (comma-separated base64 DER) if set. */
function trustedFromEnv(): string[] | undefined {
  const v = process.env.CVM_TEST_TPM_TRUSTED_AKS;
  return v ? v.split(",").filter(Boolean) : undefined;
}

export const verifier: TeeVerifier = {
  tee: "tpm",
  verify(evidence, expected, ctx) {
    const trustedAks = trustedFromEnv();
    return verifyTpmEvidence(evidence, expected, {
      ...(trustedAks ? { trustedAks } : {}),
      ...(ctx.initData ? { initDataDigest: ctx.initData.digest } : {}),
    });
  },
};

/** A verifier that trusts only `trustedAks` (for tests that start the KBS with `verifiers: { tpm: ... }`). */
export function tpmVerifierTrusting(trustedAks: string[]): TeeVerifier {
  return {
    tee: "tpm",
    verify: (evidence, expected, ctx) =>
      verifyTpmEvidence(evidence, expected, {
        trustedAks,
        ...(ctx.initData ? { initDataDigest: ctx.initData.digest } : {}),
      }),
  };
}
