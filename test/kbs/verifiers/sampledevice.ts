// trustee's `sampledevice` (insecure additional device): same checks as `sample`.
import { sampleLikeVerifier } from "./sample.ts";

export const verifier = sampleLikeVerifier("sampledevice");
