// The insecure `sample` TEE (docs/spec/kbs-protocol.md §4.1): development only. It is never chosen by
// auto-detection and only usable when the trusted config sets allow_sample. Needs no hardware,
// so it is the one source that is present on every machine.
import { b64 } from "../util/bytes.ts";
import { checkRuntimeDigest } from "../types.ts";
import type { EvidenceSource } from "../types.ts";

export function makeSampleSource(): EvidenceSource {
  return {
    id: "sample",
    tees: ["sample"],
    insecure: true,
    async probe() {
      return {
        source: "sample",
        status: "present",
        tee: "sample",
        reason: "insecure development TEE: never auto-selected, usable only with allow_sample",
      };
    },
    async collect(_env, req) {
      checkRuntimeDigest(req, "sample report_data");
      // trustee's sample verifier base64-decodes report_data and compares it with the exact digest.
      return { tee: "sample", primary: { svn: "1", report_data: b64(req.runtimeDigest) } };
    },
  };
}
