// Fault knobs for tests; all settable at start (StartOptions.faults) and at runtime (kbs.faults.*).
// Counted faults fire on the next N matching requests, then stop.

export type Endpoint = "auth" | "attest" | "resource";

export type MalformedMode =
  | "truncated" // the real JSON body cut in half (Content-Length matches the short body)
  | "garbage" // a body that is not JSON at all
  | "wrong-shape" // valid JSON without the expected members
  | "short-body" // Content-Length of the full body, half sent, then the connection is destroyed
  | "oversized" // a 2 MiB JSON body (the client's limit is 1 MiB)
  | "slow" // the real body, one byte every 250 ms (slowloris: each byte within any idle timeout)
  | "redirect"; // HTTP 302 to the same path (a misconfigured proxy)

export interface Faults {
  /** Delay before handling, per endpoint (ms). */
  delayMs: Partial<Record<Endpoint, number>>;
  /** Answer 503 (or `status`, e.g. 429) with `Retry-After: retryAfter` this many times. */
  unavailable: Partial<Record<Endpoint, { count: number; retryAfter?: string; status?: number }>>;
  /** Destroy the socket without an answer this many times. */
  drop: Partial<Record<Endpoint, number>>;
  /** Replace the real answer with a broken body this many times. */
  malformed: Partial<Record<Endpoint, { count: number; mode: MalformedMode }>>;
  /** Expire the session right after this many successful /attest answers (the token itself stays valid). */
  expireSessionAfterAttest: number;
  /** Expire the session AND its token after this many /attest answers, as if both lifetimes had
   * passed before the resource request (cookie and Bearer clients both see a 401). */
  expireTokenAfterAttest: number;
  /** Flip a bit in this many JWE responses. */
  tamperJwe: { count: number; part: "ciphertext" | "tag" };
  /** Strip Set-Cookie from this many /auth answers (a proxy that drops cookies). */
  stripSessionCookie: number;
}

export function noFaults(): Faults {
  return {
    delayMs: {},
    unavailable: {},
    drop: {},
    malformed: {},
    expireSessionAfterAttest: 0,
    expireTokenAfterAttest: 0,
    tamperJwe: { count: 0, part: "ciphertext" },
    stripSessionCookie: 0,
  };
}

/** Consume one shot of a counted fault; true when it fires. */
export function take(holder: { count: number } | undefined): boolean {
  if (!holder || holder.count <= 0) return false;
  holder.count--;
  return true;
}

export function takeCount<K extends string>(rec: Partial<Record<K, number>>, key: K): boolean {
  const n = rec[key] ?? 0;
  if (n <= 0) return false;
  rec[key] = n - 1;
  return true;
}

export function malformedBody(real: string, mode: MalformedMode): string {
  switch (mode) {
    case "truncated":
    case "short-body":
      return real.slice(0, Math.max(1, Math.floor(real.length / 2)));
    case "garbage":
      return "<html>502 upstream</html>";
    case "wrong-shape":
      return JSON.stringify({ unexpected: true });
    case "oversized":
      return JSON.stringify({ pad: "x".repeat(2 * 1024 * 1024) });
    case "slow":
    case "redirect":
      return real;
  }
}
