// configfs-tsm: the kernel's provider-neutral attestation report interface (Linux >= 6.7).
// SNP (provider sev_guest) and TDX (provider tdx_guest) sources both use it.
export { requestTsmReport, probeTsmProvider, MAX_GENERATION_ATTEMPTS, STAND_IN_WAIT_MS } from "./report.ts";
export type { TsmRequest, TsmReport, TsmAvailability } from "./report.ts";
export { INBLOB_SIZE, DEFAULT_TSM_LIMITS, ATTR } from "./attributes.ts";
export type { TsmLimits } from "./attributes.ts";
export { ensureConfigfs, isStandInRoot } from "./mount.ts";
