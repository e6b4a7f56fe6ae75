// trustee's insecure `sample` verifier (kbs-protocol.md §4.1): report_data is base64 STANDARD of the
// raw digest and must equal it with exactly the same length.
import { b64, bytesEqual, fromB64 } from "../../../platform/util/bytes.ts";
import type { TeeVerifier } from "./types.ts";

/** `sample` and the `sampledevice` additional device share trustee's sample verification. */
export function sampleLikeVerifier(tee: string): TeeVerifier {
  return {
  tee,
  verify(evidence, expected, ctx) {
    if (evidence === null || typeof evidence !== "object" || Array.isArray(evidence)) throw new Error(`${tee} evidence: expected a JSON object");
    const ev = evidence as Record<string, unknown>;
    if (typeof ev.svn !== "string") throw new Error(`${tee} evidence: missing or non-string field `svn`");
    const reportData = ev.report_data ?? "";
    if (typeof reportData !== "string") throw new Error(`${tee} evidence: field `report_data` must be a string");
    let decoded: Uint8Array;
    try {
      decoded = fromB64(reportData, "sample report_data");
    } catch (e) {
      throw new Error(`${tee} evidence: ${(e as Error).message}`);
    }
    if (!bytesEqual(decoded, expected)) {
      throw new Error(`${tee} evidence: report_data (${decoded.length} bytes) does not equal the expected runtime digest (${expected.length} bytes)`);
    }
    const claims: Record<string, unknown> = {
      svn: ev.svn,
      report_data: reportData,
      launch_digest: "abcde",
      platform_version: { major: 1, minor: 4 },
      debug: false,
    };
    if (ctx.initData) claims.init_data = b64(ctx.initData.digest);
    return claims;
  },
};
