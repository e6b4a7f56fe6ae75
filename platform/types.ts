// The contract every evidence source implements. The agent knows only this file:
//   probe()   -> is the source here, which trustee `tee` string it produces, and why (for `detect`)
//   collect() -> trustee `primary_evidence` JSON bound to the runtime digest
// Sources must never log or return secrets, must bound every wait by env.deadline, and must
// treat everything they read from devices/configfs/NV as hostile (ParseError with offsets).
import type { Deadline } from "./util/deadline.ts";
import type { Logger } from "./util/log.ts";

/** trustee `Tee` strings this agent can produce (docs/spec/kbs-protocol.md §1.8). */
export type TeeName = "sample" | "snp" | "tdx" | "tpm" | "az-snp-vtpm" | "az-tdx-vtpm" | "azsnpvtpm" | "aztdxvtpm";

export type SourceId = "snp" | "tdx" | "azure-vtpm" | "tpm" | "sample";

/** Where the platform's kernel interfaces live. Tests point these at a stand-in tree. */
export interface PlatformPaths {
  /** Root prefix for /sys, /dev, /proc lookups ("/" in production). */
  root: string;
  /** configfs-tsm report directory (default <root>/sys/kernel/config/tsm/report). */
  tsmReport: string;
}

export interface TpmOptions {
  /** "/dev/tpmrm0" or "swtpm:HOST:PORT" or "unix:/path" (testers). */
  spec: string;
  /** Persistent AK handle for `tpm` evidence (trustee default 0x81010002). */
  akHandle: number;
}

export interface AzureOptions {
  /** Base URL of the instance metadata service (http://169.254.169.254). */
  metadataUrl: string;
  /** "az-snp-vtpm" (trustee >= v0.16) or the legacy "azsnpvtpm" (v0.14-0.15). */
  legacyTeeNames: boolean;
}

export interface PlatformEnv {
  paths: PlatformPaths;
  tpm: TpmOptions;
  azure: AzureOptions;
  deadline: Deadline;
  log: Logger;
}

export interface Probe {
  source: SourceId;
  /** True when this source can produce evidence on this machine. */
  present: boolean;
  /** Which `tee` it would attest as (meaningful when present). */
  tee?: TeeName;
  /** One line a person can act on: why taken or passed over. */
  reason: string;
  /** E.g. "load the sev-guest module" when a driver is missing. */
  hint?: string;
  /** Extra facts for `detect` (TPM manufacturer, tsm provider, ...). Never secrets. */
  details?: Record<string, string>;
}

export interface EvidenceRequest {
  /** Runtime-data digest (SHA-384 of the JCS runtime data; SHA-512 only for `se`). */
  runtimeDigest: Uint8Array;
  tee: TeeName;
}

export interface Evidence {
  tee: TeeName;
  /** trustee `primary_evidence` JSON value, exactly as the verifier expects it. */
  primary: unknown;
  /** Per-step timings in ms (quote, nv-write, ...), for the phase timeline and bench. */
  timings?: Record<string, number>;
}

/** Evidence collection started before the digest is known (see EvidenceSource.begin). */
export interface EvidenceSession {
  collect(req: EvidenceRequest): Promise<Evidence>;
  /** Release the device; safe to call after collect() and when collect() was never called. */
  close(): Promise<void>;
}

export interface EvidenceSource {
  readonly id: SourceId;
  /** Insecure sources are never chosen by auto-detection. */
  readonly insecure: boolean;
  probe(env: PlatformEnv): Promise<Probe>;
  collect(env: PlatformEnv, req: EvidenceRequest): Promise<Evidence>;
  /**
   * Optional: open the device and do the work that does not depend on the digest (e.g. create the
   * TPM AK) while the KBS handshake runs; the agent calls it right after selection.
   */
  begin?(env: PlatformEnv): Promise<EvidenceSession>;
}
