// The insecure `sample` TEE (docs/spec/kbs-protocol.md §4.1): development only. It is never chosen by
// auto-detection and only usable when the trusted config sets allow_sample.
import { b64 } from "../util/bytes.ts";
import type { EvidenceSource } from "../types.ts";

export const sampleSource: EvidenceSource = {
  id: "sample",
  insecure: true,
  async probe() {
    return {
      source: "sample",
      present: true,
      tee: "sample",
      reason: "insecure development TEE: never auto-selected, usable only with allow_sample",
    };
  },
  async collect(_env, req) {
    // trustee's sample verifier base64-decodes report_data and compares it with the exact digest.
    return { tee: "sample", primary: { svn: "1", report_data: b64(req.runtimeDigest) } };
  },
};
