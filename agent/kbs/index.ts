// Public API of the KBS client.
export type { Attester, FetchedSecret, KbsClientOptions, TeeKeyType } from "./types.ts";
export { fetchResource, authRequestBody, attestRequestBody, KBS_PROTOCOL_VERSION, SESSION_COOKIE } from "./client.ts";
export { canonicalize } from "./jcs.ts";
export { reportDataFor, runtimeDigest, primaryRuntimeDataJcs, selectHashAlgorithm, type RuntimeData, type RuntimeHashAlgorithm } from "./runtime-data.ts";
export { generateTeeKey, type TeeKeyPair, type TeePubKey } from "./tee-key.ts";
export { decryptResourceJwe } from "./jwe.ts";
export { parseErrorInformation, decideOnKbsError, type ErrorInformation } from "./error-info.ts";
