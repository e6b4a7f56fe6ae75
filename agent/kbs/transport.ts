// HTTP(S) to the KBS through real undici 7 (docs/spec/bun-runtime.md §1: the bare "undici" specifier is
// Bun's shim, which silently ignores the CA). One connection per handshake (KbsConnection), so a
// TCP load balancer keeps auth, attest and resource on one replica. Every request is bounded: time
// (request_timeout_s, capped by the run deadline) and body size. Redirects are never followed.
// This module only classifies: connection failures, timeouts, 5xx and 429 are TransientError (the
// client's retry policy decides), TLS verification failures are final, since retrying cannot fix a CA.
import { Client } from "undici/index.js";
import type { LookupFunction } from "node:net";
import type { IncomingHttpHeaders } from "undici/types/header.js";
import { CvmError, errorMessage } from "../../platform/util/errors.ts";
import { TransientError } from "../../platform/util/retry.ts";
import type { Deadline } from "../../platform/util/deadline.ts";
import { buildInfo } from "../version.ts";

/** Challenge, token, JWE: all small. 1 MiB leaves room for big JWE resources without letting a host exhaust RAM. */
export const DEFAULT_MAX_BODY_BYTES = 1024 * 1024;

export interface TransportOptions {
  /** PEM CA bundle that replaces the system roots; undefined = system/bundled roots. */
  caPem?: string;
  insecureHttp: boolean;
  requestTimeoutMs: number;
  deadline: Deadline;
  /** Name resolution (default the system's; tests inject a failing resolver instead of querying DNS). */
  lookup?: LookupFunction;
}

export interface KbsHttpRequest {
  method: "GET" | "POST";
  /** Path below the endpoint, e.g. "/kbs/v0/auth". */
  path: string;
  headers?: Record<string, string>;
  /** JSON text, or raw bytes (the admin API's resource upload) sent as `contentType`. */
  body?: string | Uint8Array;
  contentType?: string;
  maxBodyBytes?: number;
  /** Short name for messages and logs ("auth", "attest", "resource"). */
  what: string;
}

export interface KbsHttpResponse {
  status: number;
  headers: IncomingHttpHeaders;
  body: Uint8Array;
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
  const url = new URL(base.pathname.replace(/\/+$/, "") + path, base.origin);
  // A path that starts with "//" (or "\\") is read as a network-path reference: another host.
  if (url.origin !== base.origin)
    throw new CvmError("config", `KBS endpoint ${endpoint}: the request URL would go to ${url.origin}, refused`, {
      hint: "an endpoint's path prefix must not start with // or contain a backslash",
    });
  return url;
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

/** Rejects when `signal` aborts (never resolves). */
function abortedPromise(signal: AbortSignal): Promise<never> {
  return new Promise((_, reject) => {
    const fail = () => reject(Object.assign(new Error("request aborted"), { name: "AbortError" }));
    if (signal.aborted) fail();
    else signal.addEventListener("abort", fail, { once: true });
  });
}

/** What every connection of a run shares: trust anchors, timeouts, the deadline. */
export class KbsTransport {
  constructor(private readonly opts: TransportOptions) {}

  /**
   * One flow (auth → attest → resource of one handshake) to one endpoint over ONE kept-alive
   * connection, so a TCP/L4 load balancer keeps the whole handshake on one replica.
   */
  connect(endpoint: string): KbsConnection {
    return new KbsConnection(endpoint, this.opts);
  }
}

export class KbsConnection {
  private readonly client: Client;
  private readonly base: URL;
  private readonly userAgent = `cvm-unlock/${buildInfo().version}`;

  constructor(
    readonly endpoint: string,
    private readonly opts: TransportOptions,
  ) {
    this.base = endpointUrl(endpoint, "", opts.insecureHttp);
    const timeout = opts.requestTimeoutMs;
    // A Client is exactly one connection (pipelining 1): reconnects happen only after a drop.
    this.client = new Client(this.base.origin, {
      // rejectUnauthorized stays explicit: otherwise an environment variable (Node's TLS-reject switch,
      // or a .env file) could disable verification (docs/spec/bun-runtime.md §1.4).
      connect: {
        ...(opts.caPem !== undefined ? { ca: opts.caPem } : {}),
        rejectUnauthorized: true,
        timeout,
        ...(opts.lookup ? { lookup: opts.lookup } : {}),
      },
      headersTimeout: timeout,
      bodyTimeout: timeout,
      pipelining: 1,
    });
  }

  async close(): Promise<void> {
    await this.client.destroy().catch(() => {});
  }

  /** One request, no retries: a TransientError when another attempt may help, a CvmError when not. */
  async request(req: KbsHttpRequest): Promise<KbsHttpResponse> {
    const { deadline } = this.opts;
    const endpoint = this.endpoint;
    deadline.check(`contacting KBS ${endpoint} (${req.what})`);
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
    if (req.body !== undefined) headers["content-type"] = req.contentType ?? "application/json";
    try {
      const pending = this.client.request({
        method: req.method,
        path: this.base.pathname.replace(/\/+$/, "") + req.path,
        headers,
        body: req.body,
        signal: controller.signal,
      });
      // undici does not give up a connection stuck in the TLS handshake when the signal aborts (only
      // at its connect timeout): stop waiting ourselves; close() destroys the socket.
      pending.catch(() => {});
      const res = await Promise.race([pending, abortedPromise(controller.signal)]);
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
        throw new TransientError(
          `KBS ${endpoint} (${req.what}): HTTP ${status}`,
          parseRetryAfter(res.headers["retry-after"]),
        );
      }
      const body = await readBounded(res, req.maxBodyBytes ?? DEFAULT_MAX_BODY_BYTES, endpoint, req.what);
      return { status, headers: res.headers, body };
    } catch (e) {
      throw this.classify(e, req.what, timedOut, timeoutMs);
    } finally {
      clearTimeout(timer);
      deadline.signal.removeEventListener("abort", onDeadline);
    }
  }

  private classify(e: unknown, what: string, timedOut: boolean, timeoutMs: number): Error {
    const endpoint = this.endpoint;
    if (e instanceof CvmError || e instanceof TransientError) return e;
    if (this.opts.deadline.signal.aborted || this.opts.deadline.expired())
      return new CvmError(
        "deadline",
        `deadline of ${this.opts.deadline.totalMs / 1000}s exceeded while talking to KBS ${endpoint} (${what})`,
      );
    if (timedOut) return new TransientError(`KBS ${endpoint} (${what}): no complete answer within ${timeoutMs} ms`);
    const codes = errorCodes(e);
    const tls = codes.find((c) => TLS_CODE.test(c));
    if (tls)
      return new CvmError("tls", `TLS verification of KBS ${endpoint} failed (${tls}): ${errorMessage(e)}`, {
        hint:
          this.opts.caPem !== undefined
            ? "check kbs.ca_file/ca_pem (--ca on the command line): it must hold the CA that signed the KBS certificate, and the certificate must name the host in the URL"
            : "no kbs.ca_file is configured (--ca on the command line), so the system roots were used; set it to the CA that signed the KBS certificate",
        cause: e,
      });
    return new TransientError(`KBS ${endpoint} (${what}): ${codes[0] ?? "connection error"}: ${errorMessage(e)}`);
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
