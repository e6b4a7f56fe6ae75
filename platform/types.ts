// The contract every evidence source implements; the agent knows only this file.
//
//   probe()    -> status, the trustee `tee` it would attest as, and why (for `detect`)
//   collect()  -> trustee `primary_evidence` JSON bound to the runtime digest
//   begin()    -> optional: digest-independent work (TPM AK load) during the KBS handshake
//   describe() -> optional: lines about the platform for people (`detect`, `evidence --decode`)
//
// Every source lives in platform/<dir>/source.ts and exports make<Id>Source(opts); the registry
// (platform/registry.ts) lists them in detection order. Sources must never log or return secrets,
// must bound every wait by env.deadline, and must treat everything they read from devices,
// configfs, sysfs or NV as hostile (ParseError with offsets).
// test/unit/platform/conformance.test.ts checks every registered source against this contract.
import type { Deadline } from "./util/deadline.ts";
import { CvmError } from "./util/errors.ts";
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

/**
 * What a probe found. One rule for every source:
 *  - "present": the platform is here and its report interface answers; collect() may be used.
 *  - "absent":  nothing of this platform on this machine (no CPU flag, firmware table, device
 *               node, sysfs entry or NV index says so); detection moves on to the next source.
 *  - "broken":  the platform IS detected (CPUID/firmware/device node/sysfs/HCL NV index says SNP,
 *               TDX, a TPM, an Azure paravisor), but its report interface is missing, refuses or
 *               returns malformed data (e.g. a TD without its tdx-guest driver, a corrupt HCL
 *               report). A broken source BLOCKS auto-detection from falling back to any later,
 *               weaker source: the host must not be able to downgrade the evidence by breaking a
 *               driver. Only a config that forces a tee may still pick a later source.
 * A probe that throws counts as "broken" (agent/select.ts).
 */
export type ProbeStatus = "present" | "absent" | "broken";

interface ProbeFacts {
  source: SourceId;
  /** One line a person can act on: why taken or passed over. */
  reason: string;
  /** E.g. "load the sev-guest module" when a driver is missing. */
  hint?: string;
  /** Extra facts for `detect` (TPM manufacturer, tsm provider, ...). Never secrets. */
  details?: Record<string, string>;
}

/** A present source always says which `tee` it attests as; the others never do. */
export type Probe =
  (ProbeFacts & { status: "present"; tee: TeeName }) | (ProbeFacts & { status: "absent"; tee?: never }) | BrokenProbe;
export type BrokenProbe = ProbeFacts & { status: "broken"; tee?: never };

/** Only an absent source may be passed over by auto-detection (see ProbeStatus). */
export function blocksFallback(probe: Probe): probe is BrokenProbe {
  return probe.status === "broken";
}

export interface EvidenceRequest {
  /** Runtime-data digest (SHA-384 of the JCS runtime data); at most MAX_RUNTIME_DIGEST bytes. */
  runtimeDigest: Uint8Array;
  tee: TeeName;
}

/** The widest report_data any source binds (SNP/TDX: 64 bytes). Every source refuses more. */
export const MAX_RUNTIME_DIGEST = 64;

/** collect()'s first step in every source: a longer digest is a caller bug, never truncated silently. */
export function checkRuntimeDigest(req: EvidenceRequest, field: string): void {
  if (req.runtimeDigest.length > MAX_RUNTIME_DIGEST)
    throw new CvmError(
      "internal",
      `runtime digest of ${req.runtimeDigest.length} bytes does not fit ${field} (${MAX_RUNTIME_DIGEST} bytes)`,
    );
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
  /** Every `tee` this source can attest as (probe().tee is one of them). */
  readonly tees: readonly TeeName[];
  /** Insecure sources are never chosen by auto-detection. */
  readonly insecure: boolean;
  /** Never throws for an expected condition: missing hardware is "absent", a failing interface "broken". */
  probe(env: PlatformEnv): Promise<Probe>;
  collect(env: PlatformEnv, req: EvidenceRequest): Promise<Evidence>;
  /**
   * Optional: open the device and do the work that does not depend on the digest (e.g. create the
   * TPM AK) while the KBS handshake runs; the agent calls it right after selection.
   */
  begin?(env: PlatformEnv): Promise<EvidenceSession>;
  /** Optional: lines about the platform behind this source for people (TPM EK certs, event-log replay). Never secrets; never throws. */
  describe?(env: PlatformEnv): Promise<string[]>;
}
