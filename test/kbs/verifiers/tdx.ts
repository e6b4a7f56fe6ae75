// trustee-style `tdx` verifier for the test KBS (docs/spec/kbs-protocol.md §4.3). Checks what trustee checks
// that can be checked offline:
//   - evidence shape {"cc_eventlog": base64|null, "quote": base64} (base64 STANDARD, strict);
//   - quote v4/v5, TEE type TDX, ECDSA-P256 attestation key; v3/SGX quotes are refused;
//   - the quote signature (ECDSA-P256-SHA256 over header ‖ body by the attestation key in the
//     signature data) and the QE-report binding of that key;
//   - REPORTDATA == expected digest ‖ zeros (regularize_data to 64);
//   - MRCONFIGID == init-data digest (regularized to 48) when init-data was given;
//   - when cc_eventlog is present: it parses as a crypto-agile CCEL and replays to RTMR0..3.
// NOT checked (cannot be, offline): the PCK certificate chain to Intel's root, the QE report
// signature by the PCK key, and TCB status from Intel PCS collateral. Real trustee does those
// through DCAP QVL; test quotes from test/helpers/tdx-fixtures.ts would fail them by design.
import { bytesEqual, fitTo, fromB64, hex } from "../../../platform/util/bytes.ts";
import { parseTdxQuote } from "../../../platform/tdx/quote.ts";
import { verifyQeBinding, verifyQuoteSignature } from "../../../platform/tdx/signature.ts";
import { trusteeEventClaims, trusteeQuoteClaims } from "../../../platform/tdx/claims.ts";
import { knownDigestSize, parseCcelLog } from "../../../platform/eventlog/index.ts";
import { ccelRtmrMismatches } from "../../../platform/tdx/rtmr.ts";
import type { TeeClaims, TeeVerifier, VerifyContext } from "./types.ts";

function field(ev: Record<string, unknown>, name: string): unknown {
  if (!Object.hasOwn(ev, name)) throw new Error(`tdx evidence: missing field \`${name}\``);
  return ev[name];
}

function decode(value: unknown, what: string): Uint8Array {
  if (typeof value !== "string") throw new Error(`tdx evidence: \`${what}\` must be a base64 string`);
  try {
    return fromB64(value, what);
  } catch (e) {
    throw new Error(`tdx evidence: ${(e as Error).message}`);
  }
}

export function verifyTdxEvidence(
  evidence: unknown,
  expectedReportData: Uint8Array,
  ctx?: Pick<VerifyContext, "initData">,
): TeeClaims {
  if (evidence === null || typeof evidence !== "object" || Array.isArray(evidence))
    throw new Error("tdx evidence: expected a JSON object");
  const ev = evidence as Record<string, unknown>;
  const quoteBytes = decode(field(ev, "quote"), "quote");
  const el = Object.hasOwn(ev, "cc_eventlog") ? ev.cc_eventlog : null;
  const quote = parseTdxQuote(quoteBytes); // ParseError names field + offset

  if (!verifyQuoteSignature(quote))
    throw new Error("tdx evidence: quote signature does not verify with the attestation key in the quote");
  if (verifyQeBinding(quote) === false)
    throw new Error("tdx evidence: QE report does not bind the attestation key (SHA-256(key ‖ auth data))");

  const expected = fitTo(expectedReportData, 64);
  if (!bytesEqual(quote.body.reportData, expected))
    throw new Error(`tdx evidence: REPORTDATA ${hex(quote.body.reportData)} != expected ${hex(expected)}`);

  if (ctx?.initData) {
    const want = fitTo(ctx.initData.digest, 48);
    if (!bytesEqual(quote.body.mrConfigId, want))
      throw new Error(`tdx evidence: MRCONFIGID ${hex(quote.body.mrConfigId)} != init-data digest ${hex(want)}`);
  }

  const claims: TeeClaims = trusteeQuoteClaims(quote);
  if (el !== null && el !== undefined && el !== "") {
    const log = parseCcelLog(decode(el, "cc_eventlog"));
    // trustee's eventlog crate refuses algorithms and event types it has no name for, and its
    // replay extends every event of MR index 1..4, EV_NO_ACTION included.
    const alg = log.algorithms.find((a) => !knownDigestSize(a.id));
    if (alg) throw new Error(`tdx evidence: cc_eventlog: Unknown algorithm type detected: ${alg.id.toString(16)}`);
    const unknown = log.events.find((e) => e.typeName.startsWith("EV_UNKNOWN"));
    if (unknown)
      throw new Error(`tdx evidence: cc_eventlog: Unknown event type detected: 0x${unknown.type.toString(16)}`);
    const [bad] = ccelRtmrMismatches(log, quote);
    if (bad)
      throw new Error(
        `tdx evidence: cc_eventlog replays RTMR${bad.index} to ${hex(bad.replayed)}, the quote has ${hex(bad.actual)}`,
      );
    claims.uefi_event_logs = trusteeEventClaims(log);
  }
  return claims;
}

export const verifier: TeeVerifier = {
  tee: "tdx",
  verify: (evidence, expected, ctx) => verifyTdxEvidence(evidence, expected, ctx),
};
