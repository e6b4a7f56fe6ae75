// The KBS client's contract with the rest of the agent (implementation: agent/kbs/client.ts).
import type { LookupFunction } from "node:net";
import type { CvmError } from "../../platform/util/errors.ts";
import type { Deadline } from "../../platform/util/deadline.ts";
import type { Logger } from "../../platform/util/log.ts";
import type { BackoffPolicy } from "../../platform/util/retry.ts";
import type { TeeName } from "../../platform/types.ts";
import type { Timeline } from "../timeline.ts";

export type TeeKeyType = "ec-p256" | "ec-p521" | "rsa-oaep-256";

export interface KbsClientOptions {
  /** Base URLs, tried in order. */
  endpoints: string[];
  /** PEM CA bundle; when set it replaces the system roots. */
  caPem?: string;
  insecureHttp: boolean;
  requestTimeoutMs: number;
  /** Attempts per endpoint (transient failures); undefined = retry until the deadline. */
  attemptsPerEndpoint?: number;
  /** Whole handshakes when the KBS refuses in a way a fresh handshake may fix. */
  resourceAttempts: number;
  /** Name resolution (tests inject a failing resolver). */
  lookup?: LookupFunction;
  /** Backoff between rounds (tests shorten it; default platform/util/retry.ts DEFAULT_BACKOFF). */
  backoff?: Partial<BackoffPolicy>;
  teeKey: TeeKeyType;
  /** init-data TOML body, sent as {"format":"toml","body":...}. */
  initDataToml?: string;
  deadline: Deadline;
  log: Logger;
  timeline: Timeline;
  /** Platform root whose /proc/net tables are polled for a route to an endpoint before the first
   * attempt (agent/kbs/route.ts); undefined = no wait. */
  routeRoot?: string;
}

/** What the client needs from the platform: the tee string for /auth, and evidence for a digest. */
export interface Attester {
  tee: TeeName;
  /** Returns trustee primary_evidence JSON bound to the runtime digest. */
  collect(runtimeDigest: Uint8Array): Promise<unknown>;
  /** Resolves when collect() can answer without a long wait (e.g. the TPM AK is loaded). The client
   * waits for it before /auth, so the connection is not idle (and closed) between /auth and /attest. */
  ready?(): Promise<void>;
}

/** The decrypted resource. The caller owns the buffer and zeroes it when done. */
export interface FetchedSecret {
  secret: Buffer;
  /** Which endpoint released it. */
  endpoint: string;
}

/** One resource fetched in a run's attested session. An optional one may be refused without failing the others. */
export interface ResourceRequest {
  path: string;
  optional?: boolean;
}

/** One resource's outcome: its secret (the caller zeroes it), or, for an optional one, why it was not released. */
export type Released = { secret: Buffer } | { refused: CvmError };
