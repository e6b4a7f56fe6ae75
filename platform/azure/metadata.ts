// Client for Azure's instance metadata service (IMDS): the VCEK for SNP CVMs and the TD quote
// for TDX CVMs (docs/spec/azure-hcl.md §3). IMDS is plain HTTP on a link-local address, so this is
// node:http with explicit bounds: every request has a timeout capped by the run deadline, and
// bodies larger than a limit are cut off before they are buffered. Responses are host input.
import * as http from "node:http";
import { b64url, fromB64url } from "../util/bytes.ts";
import type { Deadline } from "../util/deadline.ts";
import { CvmError, ParseError } from "../util/errors.ts";
import type { Logger } from "../util/log.ts";
import { certificatesFromPem } from "../util/pem.ts";

export interface MetadataOptions {
  /** http://169.254.169.254 in production; a loopback fake in tests. */
  baseUrl: string;
  deadline: Deadline;
  log: Logger;
  /** Per attempt; capped by the deadline. */
  timeoutMs?: number;
  attempts?: number;
  maxResponseBytes?: number;
}

const DEFAULT_TIMEOUT_MS = 10_000;
const DEFAULT_ATTEMPTS = 3;
/** A VCEK+chain JSON is ~7 KiB and a TD quote ~7 KiB in base64; 256 KiB leaves room for PCK chains. */
const DEFAULT_MAX_RESPONSE = 256 * 1024;
const HINT =
  "the Azure instance metadata service (169.254.169.254) must be reachable from the initramfs: bring up networking first";

export interface VcekResult {
  vcek: Uint8Array;
  /** ASK/ARK from `certificateChain` (informational; trustee uses its built-in AMD roots). */
  chain: Uint8Array[];
}

/** GET /metadata/THIM/amd/certification → the VCEK (DER) of the chip the SNP report came from. */
export async function fetchVcek(o: MetadataOptions): Promise<VcekResult> {
  const body = await requestJson(o, "GET", "/metadata/THIM/amd/certification");
  const vcekPem = stringField(body, "vcekCert", "THIM certification");
  const chainPem = stringField(body, "certificateChain", "THIM certification");
  const [vcek] = certificatesFromPem(vcekPem, "THIM vcekCert");
  return { vcek: vcek!, chain: certificatesFromPem(chainPem, "THIM certificateChain") };
}

/** POST /acc/tdquote {"report": b64url(TDREPORT)} → the TD quote (v4) for that report. */
export async function fetchTdQuote(o: MetadataOptions, tdReport: Uint8Array): Promise<Uint8Array> {
  const body = await requestJson(o, "POST", "/acc/tdquote", JSON.stringify({ report: b64url(tdReport) }));
  const quote = stringField(body, "quote", "tdquote response");
  // IMDS may pad; the decoder wants it bare. stringField refused "", so only padding can be empty.
  const bytes = fromB64url(quote.replace(/=+$/, ""), "quote", { structure: "tdquote response" });
  if (bytes.length === 0) throw new ParseError("tdquote response", "quote", 0, "only padding, no quote");
  return bytes;
}

function stringField(body: unknown, field: string, what: string): string {
  if (body === null || typeof body !== "object" || Array.isArray(body))
    throw new ParseError(what, "(root)", 0, "expected a JSON object");
  const v = (body as Record<string, unknown>)[field];
  if (typeof v !== "string" || v.length === 0)
    throw new ParseError(what, field, 0, "missing or not a non-empty string");
  return v;
}

class RetryableError extends CvmError {}

/** One JSON request with bounded retries on connection errors, timeouts, 429 and 5xx. */
async function requestJson(o: MetadataOptions, method: "GET" | "POST", path: string, body?: string): Promise<unknown> {
  const url = metadataUrl(o.baseUrl, path);
  const attempts = o.attempts ?? DEFAULT_ATTEMPTS;
  let backoff = 200;
  for (let attempt = 1; ; attempt++) {
    o.deadline.check(`asking the Azure metadata service for ${path}`);
    try {
      const text = await requestOnce(
        url,
        method,
        body,
        o.deadline.cap(o.timeoutMs ?? DEFAULT_TIMEOUT_MS),
        o.maxResponseBytes ?? DEFAULT_MAX_RESPONSE,
      );
      try {
        return JSON.parse(text);
      } catch (e) {
        throw new ParseError(`metadata ${path} response`, "body", 0, `not JSON: ${(e as Error).message}`);
      }
    } catch (e) {
      if (!(e instanceof RetryableError) || attempt >= attempts)
        throw e instanceof RetryableError ? new CvmError("platform", e.message, { hint: HINT }) : e;
      o.log.debug("Azure metadata request failed; retrying", { path, attempt, error: e.message });
      await o.deadline.sleep(backoff, `waiting to retry ${path} at the Azure metadata service`);
      backoff *= 2;
    }
  }
}

function metadataUrl(base: string, path: string): URL {
  let url: URL;
  try {
    url = new URL(path, base);
  } catch {
    throw new CvmError("config", `Azure metadata URL '${base}' is not a URL`);
  }
  if (url.protocol !== "http:")
    throw new CvmError(
      "config",
      `Azure metadata URL must be http:// (IMDS is link-local plain HTTP), got ${url.protocol}`,
    );
  return url;
}

function requestOnce(
  url: URL,
  method: string,
  body: string | undefined,
  timeoutMs: number,
  maxBytes: number,
): Promise<string> {
  const what = `Azure metadata ${method} ${url.pathname}`;
  return new Promise<string>((resolve, reject) => {
    let settled = false;
    const finish = (err: Error | undefined, value?: string) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      if (err) {
        req.destroy();
        reject(err);
      } else resolve(value!);
    };
    const headers: Record<string, string> = { Metadata: "true" };
    if (body !== undefined) {
      headers["Content-Type"] = "application/json";
      headers["Content-Length"] = String(Buffer.byteLength(body));
    }
    // IMDS must never be reached through a proxy: no agent, no proxy environment.
    const req = http.request(url, { method, headers, agent: false });
    const timer = setTimeout(
      () => finish(new RetryableError("platform", `${what}: no complete answer within ${timeoutMs} ms`)),
      timeoutMs,
    );
    req.on("error", (e) => finish(new RetryableError("platform", `${what}: ${e.message}`)));
    req.on("response", (res) => {
      const status = res.statusCode ?? 0;
      const declared = Number(res.headers["content-length"] ?? "0");
      if (declared > maxBytes)
        return finish(
          new ParseError(
            `${what} response`,
            "Content-Length",
            0,
            `${declared} bytes exceeds the ${maxBytes}-byte limit`,
          ),
        );
      const chunks: Buffer[] = [];
      let got = 0;
      res.on("data", (d: Buffer) => {
        got += d.length;
        if (got > maxBytes)
          return finish(new ParseError(`${what} response`, "body", maxBytes, `more than ${maxBytes} bytes`));
        chunks.push(d);
      });
      res.on("error", (e) => finish(new RetryableError("platform", `${what}: ${e.message}`)));
      res.on("end", () => {
        const text = Buffer.concat(chunks).toString("utf8");
        if (status === 429 || status >= 500) return finish(new RetryableError("platform", `${what}: HTTP ${status}`));
        if (status !== 200)
          return finish(
            new CvmError("platform", `${what}: HTTP ${status}: ${text.slice(0, 200).replace(/[^\x20-\x7e]/g, "?")}`, {
              hint: HINT,
            }),
          );
        finish(undefined, text);
      });
    });
    req.end(body);
  });
}
