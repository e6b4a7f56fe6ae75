// HTTP(S) to the KBS through real undici 7 (docs/spec/bun-runtime.md §1: the bare "undici" specifier is
// Bun's shim, which silently ignores the CA). Every request is bounded: per-request timeout
// capped by the run deadline, response body size, attempts per endpoint. Redirects are never
// followed. Only connection failures, 5xx and 429 are retried (exponential backoff, full jitter,
// Retry-After honoured); TLS verification failures are not, since retrying cannot fix a CA.
import { Agent, request } from "undici/index.js";
import type { IncomingHttpHeaders } from "undici/types/header.js";
import { CvmError, errorMessage } from "../../platform/util/errors.ts";
import type { Deadline } from "../../platform/util/deadline.ts";
import type { Logger } from "../../platform/util/log.ts";
import { buildInfo } from "../version.ts";

/** Challenge, token, JWE: all small. 1 MiB leaves room for big JWE resources without letting a host exhaust RAM. */
export const DEFAULT_MAX_BODY_BYTES = 1024 * 1024;

export interface TransportOptions {
  /** PEM CA bundle that replaces the system roots; undefined = system/bundled roots. */
  caPem?: string;
  insecureHttp: boolean;
  requestTimeoutMs: number;
  attemptsPerEndpoint: number;
  deadline: Deadline;
  log: Logger;
  /** Backoff tuning (tests shorten it). */
  backoffBaseMs?: number;
  backoffCapMs?: number;
  /** Longest Retry-After we are willing to wait. */
  maxRetryAfterMs?: number;
  random?: () => number;
}

export interface KbsHttpRequest {
  method: "GET" | "POST";
  /** Path below the endpoint, e.g. "/kbs/v0/auth". */
  path: string;
  headers?: Record<string, string>;
  body?: string;
  maxBodyBytes?: number;
  /** Short name for messages and logs ("auth", "attest", "resource"). */
  what: string;
}

export interface KbsHttpResponse {
  status: number;
  headers: IncomingHttpHeaders;
  body: Uint8Array;
}

/** One attempt failed in a way another attempt may fix. */
class Retriable extends Error {
  constructor(
    message: string,
    readonly retryAfterMs?: number,
  ) {
    super(message);
  }
}

/** Resolve `path` under the endpoint base URL (which may carry a path prefix). */
export function endpointUrl(endpoint: string, path: string, insecureHttp: boolean): URL {
  let base: URL;
  try {
    base = new URL(endpoint);
  } catch {
    throw new CvmError("config", `KBS endpoint '${endpoint}' is not a URL`);
  }
  if (base.protocol === "http:" && !insecureHttp)
    throw new CvmError("config", `KBS endpoint ${endpoint} is plain http://, refused`, {
      hint: "use https:// with kbs.ca_file, or set kbs.insecure_http=true for development only",
    });
  if (base.protocol !== "https:" && base.protocol !== "http:")
    throw new CvmError("config", `KBS endpoint ${endpoint}: scheme must be https:// (or http:// when insecure_http)`);
  if (base.username || base.password || base.search || base.hash)
    throw new CvmError("config", `KBS endpoint ${endpoint} must not carry credentials, a query or a fragment`);
  return new URL(base.pathname.replace(/\/+$/, "") + path, base.origin);
}

const TLS_CODE =
  /^(ERR_TLS_|ERR_SSL_|CERT_|UNABLE_TO_|DEPTH_ZERO_SELF_SIGNED_CERT$|SELF_SIGNED_CERT_IN_CHAIN$|HOSTNAME_MISMATCH$|EPROTO$)/;

function errorCodes(e: unknown): string[] {
  const codes: string[] = [];
  for (let cur = e, i = 0; cur && typeof cur === "object" && i < 6; cur = (cur as { cause?: unknown }).cause, i++) {
    const code = (cur as { code?: unknown }).code;
    if (typeof code === "string") codes.push(code);
  }
  return codes;
}

/** Parse Retry-After (delta-seconds or HTTP-date) into ms from now; undefined when absent or garbled. */
export function parseRetryAfter(value: string | string[] | undefined, now = Date.now()): number | undefined {
  const v = Array.isArray(value) ? value[0] : value;
  if (v === undefined) return undefined;
  const s = v.trim();
  if (/^\d{1,9}$/.test(s)) return Number(s) * 1000;
  if (!/^[A-Za-z]{3},? /.test(s)) return undefined; // HTTP-date starts with a day name
  const when = Date.parse(s);
  return Number.isNaN(when) ? undefined : Math.max(0, when - now);
}

export class KbsTransport {
  private readonly agent: Agent;
  private readonly userAgent = `cvm-unlock/${buildInfo().version}`;

  constructor(private readonly opts: TransportOptions) {
    const timeout = opts.requestTimeoutMs;
    this.agent = new Agent({
      // rejectUnauthorized stays explicit: otherwise an environment variable (Node's TLS-reject switch,
      // or a .env file) could disable verification (docs/spec/bun-runtime.md §1.4).
      connect:
        opts.caPem !== undefined
          ? { ca: opts.caPem, rejectUnauthorized: true, timeout }
          : { rejectUnauthorized: true, timeout },
      headersTimeout: timeout,
      bodyTimeout: timeout,
    });
  }

  async close(): Promise<void> {
    await this.agent.close().catch(() => {});
  }

  /** Send one logical request to one endpoint, retrying transient failures a bounded number of times. */
  async request(endpoint: string, req: KbsHttpRequest): Promise<KbsHttpResponse> {
    const url = endpointUrl(endpoint, req.path, this.opts.insecureHttp);
    const attempts = Math.max(1, this.opts.attemptsPerEndpoint);
    let last = "";
    for (let attempt = 1; attempt <= attempts; attempt++) {
      this.opts.deadline.check(`contacting KBS ${endpoint} (${req.what})`);
      try {
        return await this.once(url, endpoint, req);
      } catch (e) {
        if (!(e instanceof Retriable)) throw e;
        last = e.message;
        if (attempt === attempts) break;
        const wait = this.waitBeforeRetry(attempt, e.retryAfterMs, endpoint, req.what);
        this.opts.log.info(
          `kbs ${req.what}: ${e.message}; retry ${attempt + 1}/${attempts} in ${Math.round(wait)} ms`,
          { endpoint },
        );
        await this.opts.deadline.sleep(wait, `waiting to retry KBS ${endpoint} (${req.what})`);
      }
    }
    throw new CvmError("network", `KBS ${endpoint} (${req.what}) failed ${attempts} time(s); last: ${last}`, {
      hint: "check that the KBS is running and reachable from the guest (address, port, firewall, guest network)",
    });
  }

  private waitBeforeRetry(attempt: number, retryAfterMs: number | undefined, endpoint: string, what: string): number {
    const base = this.opts.backoffBaseMs ?? 250;
    const cap = this.opts.backoffCapMs ?? 5000;
    const jitter = (this.opts.random ?? Math.random)() * Math.min(cap, base * 2 ** (attempt - 1));
    if (retryAfterMs === undefined) return jitter;
    const maxRetryAfter = this.opts.maxRetryAfterMs ?? 30_000;
    if (retryAfterMs > maxRetryAfter || retryAfterMs >= this.opts.deadline.remainingMs())
      throw new CvmError(
        "network",
        `KBS ${endpoint} (${what}) asked to retry after ${Math.ceil(retryAfterMs / 1000)} s, longer than allowed (${Math.floor(Math.min(maxRetryAfter, this.opts.deadline.remainingMs()) / 1000)} s)`,
        {
          hint: "the KBS is overloaded or in maintenance; try another endpoint or a longer deadline_s",
        },
      );
    return Math.max(retryAfterMs, jitter);
  }

  private async once(url: URL, endpoint: string, req: KbsHttpRequest): Promise<KbsHttpResponse> {
    const deadline = this.opts.deadline;
    const controller = new AbortController();
    let timedOut = false;
    const timeoutMs = deadline.cap(this.opts.requestTimeoutMs);
    const timer = setTimeout(() => ((timedOut = true), controller.abort()), timeoutMs);
    const onDeadline = () => controller.abort();
    deadline.signal.addEventListener("abort", onDeadline, { once: true });
    const headers: Record<string, string> = {
      "user-agent": this.userAgent,
      accept: "application/json",
      ...req.headers,
    };
    if (req.body !== undefined) headers["content-type"] = "application/json";
    try {
      const res = await request(url, {
        dispatcher: this.agent,
        method: req.method,
        headers,
        body: req.body,
        signal: controller.signal,
      });
      const status = res.statusCode;
      if (status >= 300 && status < 400) {
        discard(res.body);
        throw new CvmError(
          "kbs-protocol",
          `KBS ${endpoint} (${req.what}) answered HTTP ${status} redirect to ${JSON.stringify(String(res.headers.location ?? "")).slice(0, 200)}; redirects are not followed`,
          {
            hint: "configure the final KBS URL (scheme, host, port, prefix) directly",
          },
        );
      }
      if (status >= 500 || status === 429) {
        discard(res.body);
        throw new Retriable(`HTTP ${status}`, parseRetryAfter(res.headers["retry-after"]));
      }
      const body = await readBounded(res, req.maxBodyBytes ?? DEFAULT_MAX_BODY_BYTES, endpoint, req.what);
      return { status, headers: res.headers, body };
    } catch (e) {
      throw this.classify(e, endpoint, req.what, timedOut, timeoutMs);
    } finally {
      clearTimeout(timer);
      deadline.signal.removeEventListener("abort", onDeadline);
    }
  }

  private classify(e: unknown, endpoint: string, what: string, timedOut: boolean, timeoutMs: number): Error {
    if (e instanceof CvmError || e instanceof Retriable) return e;
    if (this.opts.deadline.signal.aborted || this.opts.deadline.expired())
      return new CvmError(
        "deadline",
        `deadline of ${this.opts.deadline.totalMs / 1000}s exceeded while talking to KBS ${endpoint} (${what})`,
      );
    if (timedOut) return new Retriable(`no complete answer within ${timeoutMs} ms`);
    const codes = errorCodes(e);
    const tls = codes.find((c) => TLS_CODE.test(c));
    if (tls)
      return new CvmError("tls", `TLS verification of KBS ${endpoint} failed (${tls}): ${errorMessage(e)}`, {
        hint:
          this.opts.caPem !== undefined
            ? "check kbs.ca_file/ca_pem: it must hold the CA that signed the KBS certificate, and the certificate must name the host in the URL"
            : "no kbs.ca_file is configured, so the system roots were used; set kbs.ca_file to the CA that signed the KBS certificate",
        cause: e,
      });
    return new Retriable(`${codes[0] ?? "connection error"}: ${errorMessage(e)}`);
  }
}

type Body = AsyncIterable<Uint8Array> & { destroy(): void; on(event: "error", fn: () => void): unknown };

/** Drop a response body we will not read; undici reports the abort as an 'error' event, which is expected here. */
function discard(body: Body): void {
  body.on("error", () => {});
  body.destroy();
}

async function readBounded(
  res: { body: Body; headers: IncomingHttpHeaders },
  max: number,
  endpoint: string,
  what: string,
): Promise<Uint8Array> {
  const tooBig = (n: number | string) =>
    new CvmError("kbs-protocol", `KBS ${endpoint} (${what}) response body is ${n} bytes, over the ${max}-byte limit`, {
      hint: "the endpoint is not answering like a trustee KBS",
    });
  const declared = Number(res.headers["content-length"]);
  if (Number.isFinite(declared) && declared > max) {
    discard(res.body);
    throw tooBig(declared);
  }
  const chunks: Uint8Array[] = [];
  let total = 0;
  for await (const chunk of res.body) {
    total += chunk.length;
    if (total > max) {
      discard(res.body);
      throw tooBig(`more than ${max}`);
    }
    chunks.push(chunk);
  }
  return Buffer.concat(chunks, total);
}

/**
 * Run `fn` against each endpoint in order until one succeeds. Only unreachable (network) and
 * TLS failures move on to the next endpoint; an answer from a KBS (refusal, protocol error) is final.
 */
export async function tryEndpoints<T>(
  endpoints: string[],
  log: Logger,
  fn: (endpoint: string) => Promise<T>,
): Promise<T> {
  if (endpoints.length === 0)
    throw new CvmError("config", "no KBS endpoint configured", { hint: "set kbs.endpoints (or --kbs URL)" });
  const failures: CvmError[] = [];
  for (const endpoint of endpoints) {
    try {
      return await fn(endpoint);
    } catch (e) {
      if (!(e instanceof CvmError) || (e.kind !== "network" && e.kind !== "tls")) throw e;
      failures.push(e);
      if (endpoint !== endpoints[endpoints.length - 1])
        log.warning(`KBS ${endpoint} unusable, trying the next endpoint: ${e.message}`);
    }
  }
  if (failures.length === 1) throw failures[0]!;
  const tls = failures.find((f) => f.kind === "tls");
  throw new CvmError(
    tls ? "tls" : "network",
    `all ${failures.length} KBS endpoints failed: ${failures.map((f) => f.message).join("; ")}`,
    {
      hint: (tls ?? failures[0]!).hint,
    },
  );
}
