// The TPM client: one transport, one deadline, bounded retries. Every command goes through
// execute(): send the bytes, resend only on TPM_RC_RETRY/TESTING/YIELDED with backoff (as
// tpm2-tss ESAPI does; the run's one retry policy), then hand the response to a pure decoder.
import type { Deadline } from "../util/deadline.ts";
import type { Logger } from "../util/log.ts";
import { hex32 } from "./constants.ts";
import { parseResponseHeader } from "./marshal.ts";
import { retry, TransientError } from "../util/retry.ts";
import { TpmError, decodeRc, isRetryable } from "./rc.ts";
import { openTransport, type OpenOptions } from "./transport/index.ts";
import type { TpmTransport } from "./transport/types.ts";

export interface TpmClientOptions {
  /** Per-command wait (capped by the deadline). RSA key generation on slow TPMs takes seconds. */
  commandTimeoutMs?: number;
  /** How many times a RETRY/TESTING/YIELDED answer is resent before giving up. */
  maxRetries?: number;
  /** Ceiling of the first backoff; doubles up to 1 s (full jitter, platform/util/retry.ts). */
  backoffMs?: number;
}

export class Tpm {
  private readonly commandTimeoutMs: number;
  private readonly maxRetries: number;
  private readonly backoffMs: number;
  /** Filled lazily by operations that need TPM properties (NV buffer size...). */
  readonly cache = new Map<string, unknown>();

  constructor(
    readonly transport: TpmTransport,
    readonly deadline: Deadline,
    readonly log: Logger,
    opts: TpmClientOptions = {},
  ) {
    this.commandTimeoutMs = opts.commandTimeoutMs ?? 30_000;
    this.maxRetries = opts.maxRetries ?? 8;
    this.backoffMs = opts.backoffMs ?? 20;
  }

  get description(): string {
    return this.transport.description;
  }

  /** Send `command` and decode the response; TpmError on a TPM error code, ParseError on bad bytes. */
  async execute<T>(name: string, command: Uint8Array, decode: (rsp: Uint8Array) => T): Promise<T> {
    let lastRc = 0;
    const { value } = await retry(
      {
        deadline: this.deadline,
        doing: `sending TPM2_${name} to ${this.description} (TPM answered TPM_RC_RETRY/TESTING/YIELDED)`,
        maxAttempts: this.maxRetries + 1,
        backoff: { baseMs: this.backoffMs, capMs: 1_000 },
        onRetry: ({ attempt, error, waitMs }) =>
          this.log.debug("TPM asked to retry", { command: name, rc: error.message, attempt, backoff_ms: waitMs }),
        exhausted: (_last, n) =>
          new TpmError(name, lastRc, `(still ${decodeRc(lastRc).name.slice(7)} after ${n} attempts)`),
      },
      async () => {
        const rsp = await this.transport.transmit(command, this.deadline.cap(this.commandTimeoutMs));
        const { rc } = parseResponseHeader(rsp, `TPM2_${name} response`);
        if (rc !== 0 && isRetryable(rc)) {
          lastRc = rc;
          throw new TransientError(hex32(rc));
        }
        return decode(rsp);
      },
    );
    return value;
  }

  close(): void {
    this.transport.close();
  }
}

/** Open the TPM named by `spec` (/dev/tpmrm0, swtpm:HOST:PORT, unix:/path). Close it when done. */
export async function openTpm(
  spec: string,
  deadline: Deadline,
  log: Logger,
  opts: OpenOptions & TpmClientOptions = {},
): Promise<Tpm> {
  const transport = await openTransport(spec, {
    connectTimeoutMs: deadline.cap(opts.connectTimeoutMs ?? 5_000),
    ...(opts.root ? { root: opts.root } : {}),
  });
  return new Tpm(transport, deadline, log, opts);
}

/** Run `fn` with an open TPM and always close it. */
export async function withTpm<T>(
  spec: string,
  deadline: Deadline,
  log: Logger,
  fn: (tpm: Tpm) => Promise<T>,
  opts: OpenOptions & TpmClientOptions = {},
): Promise<T> {
  const tpm = await openTpm(spec, deadline, log, opts);
  try {
    return await fn(tpm);
  } finally {
    tpm.close();
  }
}
