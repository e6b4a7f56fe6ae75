// The one retry policy of the agent (KBS requests, Azure metadata, configfs-tsm generation races):
// attempts grouped in rounds, capped exponential backoff with full jitter between rounds, a
// server's Retry-After honoured up to the cap, everything bounded by the run's Deadline. A count
// limit exists only when the caller asks for one; otherwise attempts go on until the deadline.
import type { Deadline } from "./deadline.ts";
import { CvmError } from "./errors.ts";

/** An attempt failed in a way another attempt may fix (timeout, dropped connection, 5xx, a race). */
export class TransientError extends Error {
  constructor(
    message: string,
    /** The server asked to wait this long (Retry-After). */
    readonly retryAfterMs?: number,
  ) {
    super(message);
    this.name = "TransientError";
  }
}

export interface BackoffPolicy {
  /** Ceiling of the first round's wait. */
  baseMs: number;
  /** No wait is longer, whatever the round or the Retry-After. */
  capMs: number;
  /** [0, 1): full jitter draws the wait uniformly below the exponential ceiling. */
  random: () => number;
}

/** About 5 s between attempts at most: a KBS that comes back is found within seconds. */
export const DEFAULT_BACKOFF: BackoffPolicy = { baseMs: 250, capMs: 5000, random: Math.random };

/** Wait before round `round + 1` (round counts from 1). */
export function backoffMs(round: number, policy: BackoffPolicy, retryAfterMs?: number): number {
  const ceiling = Math.min(policy.capMs, policy.baseMs * 2 ** Math.min(round - 1, 30));
  const jittered = policy.random() * ceiling;
  return Math.min(policy.capMs, Math.max(retryAfterMs ?? 0, jittered));
}

export interface RetryInfo {
  /** The attempt that just failed (from 1). */
  attempt: number;
  error: TransientError;
  /** Wait before the next attempt (0 within a round, where the next member follows at once). */
  waitMs: number;
  /** The failed attempt closed a round (the wait is a backoff). */
  roundEnds: boolean;
}

export interface RetryOptions {
  deadline: Deadline;
  /** What is retried, for the deadline message ("contacting the KBS"). */
  doing: string;
  /** Attempts in total; undefined = until the deadline. */
  maxAttempts?: number;
  /** Attempts per round (e.g. the live endpoints); waits happen only between rounds. Default 1. */
  roundSize?: () => number;
  backoff?: Partial<BackoffPolicy>;
  /** Called once per failed attempt before the next one (log it). */
  onRetry?: (info: RetryInfo) => void;
  /** The error when maxAttempts is used up. */
  exhausted: (last: TransientError, attempts: number) => Error;
}

export interface RetryResult<T> {
  value: T;
  attempts: number;
  waitedMs: number;
}

/**
 * Run `attempt(n)` until it returns. A TransientError leads to another attempt; anything else is
 * thrown at once. The deadline ends the loop with a deadline error naming the last failure.
 */
export async function retry<T>(opts: RetryOptions, attempt: (n: number) => Promise<T>): Promise<RetryResult<T>> {
  const policy: BackoffPolicy = { ...DEFAULT_BACKOFF, ...opts.backoff };
  let waitedMs = 0;
  let round = 1;
  let inRound = 0;
  let retryAfterMs: number | undefined;
  let last: TransientError | undefined;
  const doing = (n: number) => (last ? `${opts.doing} (${n - 1} attempts, last: ${last.message})` : opts.doing);
  for (let n = 1; ; n++) {
    opts.deadline.check(doing(n));
    try {
      return { value: await attempt(n), attempts: n, waitedMs };
    } catch (e) {
      // the deadline may also end an attempt itself: the error still names the failure before it
      if (e instanceof CvmError && e.kind === "deadline" && last)
        throw new CvmError("deadline", `${e.message} (${n - 1} attempts before, last: ${last.message})`, {
          ...(e.hint !== undefined ? { hint: e.hint } : {}),
          cause: e,
        });
      if (!(e instanceof TransientError)) throw e;
      last = e;
      if (opts.maxAttempts !== undefined && n >= opts.maxAttempts) throw opts.exhausted(e, n);
      if (e.retryAfterMs !== undefined) retryAfterMs = Math.max(retryAfterMs ?? 0, e.retryAfterMs);
      inRound++;
      const roundEnds = inRound >= Math.max(1, opts.roundSize?.() ?? 1);
      const waitMs = roundEnds ? Math.round(backoffMs(round, policy, retryAfterMs)) : 0;
      opts.onRetry?.({ attempt: n, error: e, waitMs, roundEnds });
      if (!roundEnds) continue;
      const before = opts.deadline.remainingMs();
      await opts.deadline.sleep(waitMs, doing(n + 1));
      waitedMs += before - opts.deadline.remainingMs();
      round++;
      inRound = 0;
      retryAfterMs = undefined;
    }
  }
}
