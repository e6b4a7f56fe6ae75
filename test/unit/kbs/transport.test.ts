import { createServer as createHttpServer, type IncomingMessage, type ServerResponse } from "node:http";
import { createServer as createHttpsServer } from "node:https";
import { createServer as createTcpServer, type AddressInfo, type Server } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  endpointUrl,
  KbsTransport,
  parseRetryAfter,
  tryEndpoints,
  type TransportOptions,
} from "../../../agent/kbs/transport.ts";
import { Deadline } from "../../../platform/util/deadline.ts";
import { CvmError } from "../../../platform/util/errors.ts";
import { failure } from "./helpers/failure.ts";
import { createLogger, silentLogger } from "../../../platform/util/log.ts";
import * as fs from "node:fs";
import { createPki, type Pki } from "../../helpers/pki.ts";
import { configSchema } from "../../../agent/config/schema.ts";

type Handler = (req: IncomingMessage, res: ServerResponse) => void;

/** Routes by the first path segment, which tests use as the endpoint prefix (scenario). */
const scenarios: Record<string, Handler> = {};
const hits: Record<string, number> = {};
let connections = 0;
const route: Handler = (req, res) => {
  const name = (req.url ?? "/").split("/")[1] ?? "";
  hits[name] = (hits[name] ?? 0) + 1;
  const h = scenarios[name];
  if (h) h(req, res);
  else res.writeHead(404).end();
};

let pki: Pki;
/** A second PKI whose server certificate names only attest.example: right CA, wrong host. */
let otherHostPki: Pki;
let httpsUrl: string;
let otherHostUrl: string;
let httpUrl: string;
let resetUrl: string;
let resetConnections = 0;
let deadUrl: string;
const servers: { close(): unknown }[] = [];

const listen = (s: Server | ReturnType<typeof createHttpsServer>) =>
  new Promise<number>((resolve) => s.listen(0, "127.0.0.1", () => resolve((s.address() as AddressInfo).port)));

beforeAll(async () => {
  pki = createPki();
  otherHostPki = createPki({ altNames: ["DNS:attest.example"] });
  const https = createHttpsServer({ key: pki.serverKeyPem, cert: pki.serverCertPem }, route);
  https.on("connection", () => connections++);
  const other = createHttpsServer({ key: otherHostPki.serverKeyPem, cert: otherHostPki.serverCertPem }, route);
  const http = createHttpServer(route);
  const reset = createTcpServer((sock) => (resetConnections++, sock.destroy()));
  const dead = createTcpServer();
  httpsUrl = `https://127.0.0.1:${await listen(https)}`;
  otherHostUrl = `https://127.0.0.1:${await listen(other)}`;
  httpUrl = `http://127.0.0.1:${await listen(http)}`;
  resetUrl = `https://127.0.0.1:${await listen(reset)}`;
  deadUrl = `https://127.0.0.1:${await listen(dead)}`;
  await new Promise((r) => dead.close(r)); // port now refuses connections
  servers.push(https, other, http, reset);
  for (const s of [https, other, http]) (s as unknown as { keepAliveTimeout: number }).keepAliveTimeout = 100;
});

afterAll(async () => {
  for (const s of servers) (s as { closeAllConnections?: () => void }).closeAllConnections?.();
  for (const s of servers) s.close();
  for (const p of [pki, otherHostPki]) if (p) fs.rmSync(p.dir, { recursive: true, force: true });
});

const opts = (over: Partial<TransportOptions> = {}): TransportOptions => ({
  caPem: pki.caPem,
  insecureHttp: false,
  requestTimeoutMs: 5000,
  attemptsPerEndpoint: 3,
  deadline: new Deadline(30_000),
  log: silentLogger,
  backoffBaseMs: 10,
  backoffCapMs: 50,
  ...over,
});

async function withTransport<T>(o: TransportOptions, fn: (t: KbsTransport) => Promise<T>): Promise<T> {
  const t = new KbsTransport(o);
  try {
    return await fn(t);
  } finally {
    await t.close();
    o.deadline.dispose();
  }
}

const get = (t: KbsTransport, endpoint: string, over: object = {}) =>
  t.request(endpoint, { method: "GET", path: "/kbs/v0/x", what: "test", ...over });

scenarios.ok = (req, res) => {
  let body = "";
  req.on("data", (c) => (body += c));
  req.on("end", () =>
    res.writeHead(200, { "content-type": "application/json" }).end(
      JSON.stringify({
        path: req.url,
        method: req.method,
        body,
        ct: req.headers["content-type"],
        cookie: req.headers.cookie ?? null,
      }),
    ),
  );
};

describe("KBS transport over real undici + TLS", () => {
  it("right CA: request succeeds; prefix, method, body and headers arrive intact", async () => {
    const res = await withTransport(opts(), (t) =>
      t.request(`${httpsUrl}/ok/`, {
        method: "POST",
        path: "/kbs/v0/auth",
        body: '{"a":1}',
        headers: { cookie: "kbs-session-id=abc" },
        what: "auth",
      }),
    );
    expect(res.status).toBe(200);
    expect(JSON.parse(Buffer.from(res.body).toString())).toEqual({
      path: "/ok/kbs/v0/auth",
      method: "POST",
      body: '{"a":1}',
      ct: "application/json",
      cookie: "kbs-session-id=abc",
    });
  });

  it("wrong CA (same subject DN): fails as 'tls' at once, one connection, hint names the CA", async () => {
    const before = connections;
    const e = await failure(withTransport(opts({ caPem: pki.wrongCaPem }), (t) => get(t, `${httpsUrl}/ok`)));
    expect(e.kind).toBe("tls");
    expect(e.message).toContain(httpsUrl);
    expect(e.hint).toMatch(/ca_file/);
    expect(connections - before).toBe(1);
  });

  it("no CA configured: the system roots do not trust a private CA -> 'tls'", async () => {
    const e = await failure(withTransport(opts({ caPem: undefined }), (t) => get(t, `${httpsUrl}/ok`)));
    expect(e.kind).toBe("tls");
    expect(e.hint).toMatch(/no kbs.ca_file is configured/);
  });

  it("hostname mismatch (cert for attest.example, right CA) -> 'tls'", async () => {
    const e = await failure(withTransport(opts({ caPem: otherHostPki.caPem }), (t) => get(t, `${otherHostUrl}/ok`)));
    expect(e.kind).toBe("tls");
    expect(e.message).toMatch(/ERR_TLS_CERT_ALTNAME_INVALID/);
  });

  it("stays verified even with NODE_TLS_REJECT_UNAUTHORIZED=0 in the environment", async () => {
    const saved = process.env.NODE_TLS_REJECT_UNAUTHORIZED;
    process.env.NODE_TLS_REJECT_UNAUTHORIZED = "0";
    try {
      const e = await failure(withTransport(opts({ caPem: pki.wrongCaPem }), (t) => get(t, `${httpsUrl}/ok`)));
      expect(e.kind).toBe("tls");
    } finally {
      if (saved === undefined) delete process.env.NODE_TLS_REJECT_UNAUTHORIZED;
      else process.env.NODE_TLS_REJECT_UNAUTHORIZED = saved;
    }
  });

  it("plain http:// is refused unless insecureHttp", async () => {
    const e = await failure(withTransport(opts(), (t) => get(t, `${httpUrl}/ok`)));
    expect(e.kind).toBe("config");
    expect(e.hint).toMatch(/insecure_http/);
    const res = await withTransport(opts({ insecureHttp: true }), (t) => get(t, `${httpUrl}/ok`));
    expect(res.status).toBe(200);
  });

  it("503 with Retry-After: 1 is honoured, then succeeds", async () => {
    let n = 0;
    scenarios.busy = (_req, res) =>
      n++ === 0 ? res.writeHead(503, { "retry-after": "1" }).end() : res.writeHead(200).end("ok");
    const t0 = performance.now();
    const res = await withTransport(opts(), (t) => get(t, `${httpsUrl}/busy`));
    const waited = performance.now() - t0;
    expect(res.status).toBe(200);
    expect(n).toBe(2);
    expect(waited).toBeGreaterThanOrEqual(990);
    expect(waited).toBeLessThan(3000);
  });

  it("Retry-After longer than allowed gives up on the endpoint without sleeping", async () => {
    scenarios.maint = (_req, res) => res.writeHead(503, { "retry-after": "120" }).end();
    const t0 = performance.now();
    const e = await failure(withTransport(opts(), (t) => get(t, `${httpsUrl}/maint`)));
    expect(e.kind).toBe("network");
    expect(e.message).toMatch(/retry after 120 s/);
    expect(performance.now() - t0).toBeLessThan(2000);
  });

  it("5xx and 429 are retried a bounded number of times", async () => {
    hits.e500 = 0;
    scenarios.e500 = (_req, res) => res.writeHead(500).end();
    const e = await failure(withTransport(opts(), (t) => get(t, `${httpsUrl}/e500`)));
    expect(e.kind).toBe("network");
    expect(e.message).toMatch(/failed 3 time\(s\); last: HTTP 500/);
    expect(hits.e500).toBe(3);
    let n = 0;
    scenarios.e429 = (_req, res) => (n++ < 2 ? res.writeHead(429).end() : res.writeHead(200).end());
    expect((await withTransport(opts(), (t) => get(t, `${httpsUrl}/e429`))).status).toBe(200);
    expect(n).toBe(3);
  });

  it("4xx answers are returned to the caller, not retried", async () => {
    hits.deny = 0;
    scenarios.deny = (_req, res) => res.writeHead(401).end('{"type":"x","detail":"y"}');
    const res = await withTransport(opts(), (t) => get(t, `${httpsUrl}/deny`));
    expect([res.status, Buffer.from(res.body).toString(), hits.deny]).toEqual([401, '{"type":"x","detail":"y"}', 1]);
  });

  it("connection reset is retried attemptsPerEndpoint times, then reported as 'network'", async () => {
    resetConnections = 0;
    const e = await failure(withTransport(opts(), (t) => get(t, resetUrl)));
    expect(e.kind).toBe("network");
    expect(resetConnections).toBe(3);
  });

  it("connection refused is retried, then the next endpoint is used", async () => {
    const lines: string[] = [];
    const log = createLogger({ format: "text", verbose: true, write: (l) => lines.push(l) });
    const o = opts({ log });
    const res = await withTransport(o, (t) => tryEndpoints([deadUrl, `${httpsUrl}/ok`], log, (ep) => get(t, ep)));
    expect(res.status).toBe(200);
    expect(lines.filter((l) => /ECONNREFUSED.*retry [23]\/3/.test(l))).toHaveLength(2);
    expect(lines.some((l) => l.includes(`KBS ${deadUrl} unusable, trying the next endpoint`))).toBe(true);
  });

  it("all endpoints failing: one error naming each, 'tls' winning over 'network'", async () => {
    const o = opts({ caPem: pki.wrongCaPem, attemptsPerEndpoint: 1 });
    const e = await failure(
      withTransport(o, (t) => tryEndpoints([deadUrl, `${httpsUrl}/ok`], silentLogger, (ep) => get(t, ep))),
    );
    expect(e.kind).toBe("tls");
    expect(e.message).toMatch(/all 2 KBS endpoints failed/);
    expect(e.message).toContain(deadUrl);
    const none = await failure(tryEndpoints([], silentLogger, async () => 1));
    expect(none.kind).toBe("config");
  });

  it("a KBS answer (not a transport failure) does not move on to the next endpoint", async () => {
    let second = false;
    const e = await failure(
      tryEndpoints(["a", "b"], silentLogger, async (ep) => {
        if (ep === "b") second = true;
        throw new CvmError("kbs-refused", "no");
      }),
    );
    expect([e.kind, second]).toEqual(["kbs-refused", false]);
  });

  it("body over the limit is rejected, streamed or declared", async () => {
    scenarios.big = (_req, res) => {
      res.writeHead(200); // chunked, no content-length
      for (let i = 0; i < 8; i++) res.write(Buffer.alloc(1024, 0x41));
      res.end();
    };
    scenarios.declared = (_req, res) => res.writeHead(200, { "content-length": String(4096) }).end(Buffer.alloc(4096));
    const e = await failure(withTransport(opts(), (t) => get(t, `${httpsUrl}/big`, { maxBodyBytes: 2048 })));
    expect(e.kind).toBe("kbs-protocol");
    expect(e.message).toMatch(/more than 2048.*over the 2048-byte limit/);
    const d = await failure(withTransport(opts(), (t) => get(t, `${httpsUrl}/declared`, { maxBodyBytes: 2048 })));
    expect(d.message).toMatch(/is 4096 bytes, over the 2048-byte limit/);
    expect((await withTransport(opts(), (t) => get(t, `${httpsUrl}/big`, { maxBodyBytes: 8192 }))).body.length).toBe(
      8192,
    );
  });

  it("redirects are rejected, not followed", async () => {
    hits.moved = 0;
    scenarios.moved = (_req, res) => res.writeHead(302, { location: `${httpsUrl}/ok/kbs/v0/x` }).end();
    const e = await failure(withTransport(opts(), (t) => get(t, `${httpsUrl}/moved`)));
    expect(e.kind).toBe("kbs-protocol");
    expect(e.message).toMatch(/HTTP 302 redirect .*not followed/);
    expect(hits.moved).toBe(1);
  });

  it("per-request timeout bounds a silent server and is retried", async () => {
    hits.silent = 0;
    scenarios.silent = () => {};
    const t0 = performance.now();
    const e = await failure(
      withTransport(opts({ requestTimeoutMs: 300, attemptsPerEndpoint: 2 }), (t) => get(t, `${httpsUrl}/silent`)),
    );
    const took = performance.now() - t0;
    expect(e.kind).toBe("network");
    expect(e.message).toMatch(/no complete answer within 300 ms/);
    expect(hits.silent).toBe(2);
    expect(took).toBeGreaterThanOrEqual(590);
    expect(took).toBeLessThan(3000);
  });

  it("the overall deadline stops a request as 'deadline'", async () => {
    scenarios.silent = () => {};
    const t0 = performance.now();
    const e = await failure(
      withTransport(opts({ deadline: new Deadline(400), requestTimeoutMs: 10_000 }), (t) =>
        get(t, `${httpsUrl}/silent`),
      ),
    );
    expect(e.kind).toBe("deadline");
    expect(performance.now() - t0).toBeLessThan(2500);
  });
});

describe("transport helpers", () => {
  it("endpointUrl joins prefixes and refuses what it must", () => {
    expect(endpointUrl("https://kbs.example:8080", "/kbs/v0/auth", false).href).toBe(
      "https://kbs.example:8080/kbs/v0/auth",
    );
    expect(endpointUrl("https://kbs.example/trustee//", "/kbs/v0/auth", false).href).toBe(
      "https://kbs.example/trustee/kbs/v0/auth",
    );
    for (const bad of ["kbs.example", "ftp://kbs", "https://u:p@kbs", "https://kbs/?q=1", "https://kbs/#f"])
      expect(() => endpointUrl(bad, "/x", true), bad).toThrow(CvmError);
    expect(() => endpointUrl("http://kbs", "/x", false)).toThrow(/plain http/);
  });

  it("parseRetryAfter: seconds, HTTP date, garbage", () => {
    const now = Date.parse("Wed, 21 Oct 2026 07:28:00 GMT");
    expect(parseRetryAfter("2", now)).toBe(2000);
    expect(parseRetryAfter(["7"], now)).toBe(7000);
    expect(parseRetryAfter("Wed, 21 Oct 2026 07:28:05 GMT", now)).toBe(5000);
    expect(parseRetryAfter("Wed, 21 Oct 2026 07:27:00 GMT", now)).toBe(0);
    expect(parseRetryAfter("soon", now)).toBeUndefined();
    expect(parseRetryAfter(undefined, now)).toBeUndefined();
    expect(parseRetryAfter("-1", now)).toBeUndefined();
  });
});

describe("an endpoint path that names another host (issue 10)", () => {
  const hostile = ["https://kbs.example.com//attacker.example", "https://kbs.example.com/\\attacker.example"];
  it("endpointUrl never builds a request URL for another origin", () => {
    for (const e of hostile) {
      const err = (() => {
        try {
          return endpointUrl(e, "/kbs/v0/auth", false).href;
        } catch (x) {
          return x as CvmError;
        }
      })();
      expect(err, e).toBeInstanceOf(CvmError);
      expect((err as CvmError).kind).toBe("config");
    }
  });

  it("config validation refuses such endpoints (exit 3) wherever a KBS URL is accepted", () => {
    for (const e of [...hostile, "https://kbs.example.com\\@attacker.example"]) {
      expect(() => configSchema.parse({ kbs: { endpoints: [e] } }, ""), e).toThrow(/kbs.endpoints\[0\]/);
      expect(() => configSchema.parse({ unlock: { luks_token: { allowed_endpoints: [e] } } }, ""), e).toThrow(CvmError);
    }
    expect(() => configSchema.parse({ kbs: { endpoints: ["https://kbs.example.com/prefix//x"] } }, "")).not.toThrow();
  });
});
