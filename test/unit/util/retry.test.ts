// The run's one retry policy (platform/util/retry.ts), on a fake clock: rounds, capped backoff with
// full jitter, Retry-After up to the cap, the deadline, and the claim that the DEFAULT deadline
// rides out a KBS that is down for its first minute.
import { afterEach, describe, expect, it, vi } from "vitest";
import { configSchema } from "../../../agent/config/schema.ts";
import { Deadline } from "../../../platform/util/deadline.ts";
import { CvmError } from "../../../platform/util/errors.ts";
import {
  backoffMs,
  DEFAULT_BACKOFF,
  retry,
  TransientError,
  type RetryInfo,
  type RetryOptions,
} from "../../../platform/util/retry.ts";

afterEach(() => vi.useRealTimers());

const exhausted = (last: TransientError, n: number) => new CvmError("network", `gave up after ${n}: ${last.message}`);

/** Run `p` while advancing the fake clock in 100 ms steps, as the real one would. */
async function onFakeClock<T>(p: Promise<T>, maxMs: number): Promise<T> {
  let settled = false;
  const out = p.finally(() => (settled = true));
  out.catch(() => {});
  for (let t = 0; !settled && t < maxMs; t += 100) await vi.advanceTimersByTimeAsync(100);
  return out;
}

describe("backoffMs", () => {
  const policy = (r: number) => ({ ...DEFAULT_BACKOFF, random: () => r });
  it("full jitter below an exponential ceiling, capped at about 5 s", () => {
    expect(backoffMs(1, policy(0))).toBe(0);
    expect(backoffMs(1, policy(0.999))).toBeCloseTo(249.75);
    expect(backoffMs(3, policy(0.5))).toBe(500);
    expect(backoffMs(10, policy(0.999))).toBeCloseTo(4995);
    expect(backoffMs(1000, policy(0.999))).toBeLessThanOrEqual(5000);
  });
  it("Retry-After is honoured up to the cap, huge values are cut to the cap", () => {
    expect(backoffMs(1, policy(0), 2000)).toBe(2000);
    expect(backoffMs(1, policy(0), 3_600_000)).toBe(5000);
    expect(backoffMs(8, policy(0.9), 100)).toBe(4500); // jitter larger than a short Retry-After
  });
});

describe("retry", () => {
  const opts = (over: Partial<RetryOptions> = {}): RetryOptions => ({
    deadline: new Deadline(60_000),
    doing: "testing",
    backoff: { baseMs: 1, capMs: 2 },
    exhausted,
    ...over,
  });

  it("returns the first success with the attempt count", async () => {
    let n = 0;
    const r = await retry(opts(), async () => {
      if (++n < 3) throw new TransientError(`try ${n}`);
      return "ok";
    });
    expect([r.value, r.attempts]).toEqual(["ok", 3]);
  });

  it("a non-transient error stops at once", async () => {
    let n = 0;
    const e = await retry(opts(), async () => {
      n++;
      throw new CvmError("kbs-refused", "no");
    }).catch((x: unknown) => x);
    expect([(e as CvmError).kind, n]).toEqual(["kbs-refused", 1]);
  });

  it("a count limit only when asked: maxAttempts -> the exhausted error", async () => {
    let n = 0;
    const e = await retry(opts({ maxAttempts: 4 }), async () => {
      throw new TransientError(`down ${++n}`);
    }).catch((x: unknown) => x);
    expect((e as CvmError).message).toBe("gave up after 4: down 4");
  });

  it("waits only between rounds; each failure is reported once with the next wait", async () => {
    const seen: RetryInfo[] = [];
    let n = 0;
    await retry(
      opts({ roundSize: () => 3, backoff: { baseMs: 20, capMs: 20, random: () => 0.5 }, onRetry: (i) => seen.push(i) }),
      async () => {
        if (++n <= 6) throw new TransientError(`e${n}`);
      },
    );
    expect(seen.map((i) => [i.attempt, i.waitMs, i.roundEnds])).toEqual([
      [1, 0, false],
      [2, 0, false],
      [3, 10, true],
      [4, 0, false],
      [5, 0, false],
      [6, 10, true],
    ]);
  });

  it("the deadline ends the retries with a deadline error naming the attempts and the last failure", async () => {
    vi.useFakeTimers({ toFake: ["setTimeout", "clearTimeout", "Date"] });
    let n = 0;
    const p = retry(opts({ deadline: new Deadline(20_000), backoff: {} }), async () => {
      throw new TransientError(`ECONNREFUSED ${++n}`);
    });
    const e = (await onFakeClock(p, 30_000).catch((x: unknown) => x)) as CvmError;
    expect(e.kind).toBe("deadline");
    expect(e.message).toMatch(
      new RegExp(`deadline of 20s exceeded while testing \\(${n} attempts, last: ECONNREFUSED ${n}\\)`),
    );
    expect(n).toBeGreaterThan(5); // capped at 5 s: at least one attempt per 5 s
  });

  it("the deadline ending an attempt itself still names the failure before it", async () => {
    let n = 0;
    const p = retry(opts(), async () => {
      if (++n === 1) throw new TransientError("getaddrinfo ENOTFOUND kbs.example");
      throw new CvmError("deadline", "deadline of 1s exceeded while talking to KBS (auth)", { hint: "raise it" });
    });
    const e = (await p.catch((x: unknown) => x)) as CvmError;
    expect(e.kind).toBe("deadline");
    expect(e.message).toBe(
      "deadline of 1s exceeded while talking to KBS (auth) (1 attempts before, last: getaddrinfo ENOTFOUND kbs.example)",
    );
    expect(e.hint).toBe("raise it");
  });

  it("DEFAULT config: a KBS that comes up 60 s late is reached within one backoff cap, no wait over 5 s", async () => {
    vi.useFakeTimers({ toFake: ["setTimeout", "clearTimeout", "Date"] });
    const defaults = configSchema.parse({}, "");
    expect(defaults.kbs.attempts_per_endpoint).toBeUndefined(); // no count limit by default
    const deadline = new Deadline(defaults.deadline_s * 1000);
    const t0 = Date.now();
    const waits: number[] = [];
    const p = retry(
      { deadline, doing: "contacting the KBS", exhausted, onRetry: (i) => waits.push(i.waitMs) },
      async () => {
        if (Date.now() - t0 < 60_000) throw new TransientError("ECONNREFUSED");
        return Date.now() - t0;
      },
    );
    const upAfter = await onFakeClock(p, defaults.deadline_s * 1000);
    expect(upAfter.value).toBeGreaterThanOrEqual(60_000);
    expect(upAfter.value).toBeLessThanOrEqual(60_000 + DEFAULT_BACKOFF.capMs + 100);
    expect(Math.max(...waits)).toBeLessThanOrEqual(DEFAULT_BACKOFF.capMs);
    expect(upAfter.waitedMs).toBeGreaterThanOrEqual(59_000);
    deadline.dispose();
  });
});
