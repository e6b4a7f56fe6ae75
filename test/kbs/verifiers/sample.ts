// trustee's insecure `sample` verifier (docs/spec/kbs-protocol.md §4.1): report_data is base64 STANDARD of the
// raw digest and must equal it with exactly the same length; `svn` is a required string.
// The `sampledevice` additional device is verified the same way (./sampledevice.ts).
import { b64, bytesEqual, fromB64 } from "../../../platform/util/bytes.ts";
import type { TeeClaims, TeeVerifier } from "./types.ts";

export function sampleLikeVerifier(tee: string): TeeVerifier {
  const reject = (problem: string) => new Error(`${tee} evidence: ${problem}`);
  return {
    tee,
    verify(evidence, expected, ctx): TeeClaims {
      if (evidence === null || typeof evidence !== "object" || Array.isArray(evidence))
        throw reject("expected a JSON object");
      const ev = evidence as Record<string, unknown>;
      if (typeof ev.svn !== "string") throw reject("missing or non-string field `svn`");
      const reportData = ev.report_data ?? "";
      if (typeof reportData !== "string") throw reject("field `report_data` must be a string");
      let decoded: Uint8Array;
      try {
        decoded = fromB64(reportData, "report_data");
      } catch (e) {
        throw reject((e as Error).message);
      }
      if (!bytesEqual(decoded, expected)) {
        throw reject(
          `report_data (${decoded.length} bytes) does not equal the expected runtime digest (${expected.length} bytes)`,
        );
      }
      const claims: TeeClaims = {
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
}

export const verifier = sampleLikeVerifier("sample");
