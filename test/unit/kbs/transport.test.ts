import { createServer as createHttpServer, type IncomingMessage, type ServerResponse } from "node:http";
import { createServer as createHttpsServer } from "node:https";
import { createServer as createTcpServer, type AddressInfo, type Server } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  endpointUrl,
  KbsTransport,
  parseRetryAfter,
  type KbsConnection,
  type TransportOptions,
} from "../../../agent/kbs/transport.ts";
import { TransientError } from "../../../platform/util/retry.ts";
import { Deadline } from "../../../platform/util/deadline.ts";
import { CvmError } from "../../../platform/util/errors.ts";
import { failure } from "./helpers/failure.ts";
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
/** Right CA and name, but the server certificate expired yesterday. */
let expiredPki: Pki;
let expiredUrl: string;
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
  expiredPki = createPki({ serverDays: -1 });
  const expired = createHttpsServer({ key: expiredPki.serverKeyPem, cert: expiredPki.serverCertPem }, route);
  expiredUrl = `https://127.0.0.1:${await listen(expired)}`;
  servers.push(expired);
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
  // The plain-http server closes idle connections quickly (reconnect test); the https one keeps node's 5 s.
  (http as unknown as { keepAliveTimeout: number }).keepAliveTimeout = 100;
});

afterAll(async () => {
  for (const s of servers) (s as { closeAllConnections?: () => void }).closeAllConnections?.();
  for (const s of servers) s.close();
  for (const p of [pki, otherHostPki, expiredPki]) if (p) fs.rmSync(p.dir, { recursive: true, force: true });
});

const opts = (over: Partial<TransportOptions> = {}): TransportOptions => ({
  caPem: pki.caPem,
  insecureHttp: false,
  requestTimeoutMs: 5000,
  deadline: new Deadline(30_000),
  ...over,
});

/** One connection to `endpoint` (as one handshake uses it), closed after `fn`. */
async function withConn<T>(o: TransportOptions, endpoint: string, fn: (c: KbsConnection) => Promise<T>): Promise<T> {
  const c = new KbsTransport(o).connect(endpoint);
  try {
    return await fn(c);
  } finally {
    await c.close();
    o.deadline.dispose();
  }
}

const get = (c: KbsConnection, over: object = {}) =>
  c.request({ method: "GET", path: "/kbs/v0/x", what: "test", ...over });
const getAt = (o: TransportOptions, endpoint: string, over: object = {}) => withConn(o, endpoint, (c) => get(c, over));

/** The TransientError a promise rejects with (another attempt may succeed). */
async function transient(p: Promise<unknown>): Promise<TransientError> {
  const e = await p.then(
    () => undefined,
    (err: unknown) => err,
  );
  expect(e, "expected a TransientError").toBeInstanceOf(TransientError);
  return e as TransientError;
}

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
        port: req.socket.remotePort,
      }),
    ),
  );
};

describe("KBS transport over real undici + TLS", () => {
  it("right CA: request succeeds; prefix, method, body and headers arrive intact", async () => {
    const res = await withConn(opts(), `${httpsUrl}/ok/`, (c) =>
      c.request({
        method: "POST",
        path: "/kbs/v0/auth",
        body: '{"a":1}',
        headers: { cookie: "kbs-session-id=abc" },
        what: "auth",
      }),
    );
    expect(res.status).toBe(200);
    expect(JSON.parse(Buffer.from(res.body).toString())).toMatchObject({
      path: "/ok/kbs/v0/auth",
      method: "POST",
      body: '{"a":1}',
      ct: "application/json",
      cookie: "kbs-session-id=abc",
    });
  });

  it("one flow, one connection: auth, attest and resource of a handshake share one TCP connection", async () => {
    const before = connections;
    const ports = await withConn(opts({ requestTimeoutMs: 5000 }), `${httpsUrl}/ok`, async (c) => {
      const seen: number[] = [];
      for (const path of ["/kbs/v0/auth", "/kbs/v0/attest", "/kbs/v0/resource/a/b/c"])
        seen.push(JSON.parse(Buffer.from((await get(c, { path })).body).toString()).port);
      return seen;
    });
    expect(connections - before).toBe(1);
    expect(new Set(ports).size).toBe(1);
  });

  it("a flow whose idle connection the server closed reconnects for its next request", async () => {
    const ports = await withConn(opts({ insecureHttp: true }), `${httpUrl}/ok`, async (c) => {
      const first = JSON.parse(Buffer.from((await get(c)).body).toString()).port;
      await new Promise((r) => setTimeout(r, 300)); // the http server's keepAliveTimeout is 100 ms
      return [first, JSON.parse(Buffer.from((await get(c)).body).toString()).port];
    });
    expect(ports[0]).not.toBe(ports[1]);
  });

  it("two flows do not share a connection", async () => {
    const before = connections;
    const t = new KbsTransport(opts());
    const [a, b] = [t.connect(`${httpsUrl}/ok`), t.connect(`${httpsUrl}/ok`)];
    try {
      await Promise.all([get(a), get(b)]);
      expect(connections - before).toBe(2);
    } finally {
      await Promise.all([a.close(), b.close()]);
    }
  });

  it("wrong CA (same subject DN): fails as 'tls' at once, one connection, hint names the CA", async () => {
    const before = connections;
    const e = await failure(getAt(opts({ caPem: pki.wrongCaPem }), `${httpsUrl}/ok`));
    expect(e.kind).toBe("tls");
    expect(e.message).toContain(httpsUrl);
    expect(e.hint).toMatch(/ca_file/);
    expect(connections - before).toBe(1);
  });

  it("no CA configured: the system roots do not trust a private CA -> 'tls'", async () => {
    const e = await failure(getAt(opts({ caPem: undefined }), `${httpsUrl}/ok`));
    expect(e.kind).toBe("tls");
    expect(e.hint).toMatch(/no kbs.ca_file is configured/);
  });

  it("hostname mismatch (cert for attest.example, right CA) -> 'tls'", async () => {
    const e = await failure(getAt(opts({ caPem: otherHostPki.caPem }), `${otherHostUrl}/ok`));
    expect(e.kind).toBe("tls");
    expect(e.message).toMatch(/ERR_TLS_CERT_ALTNAME_INVALID/);
  });

  it("expired server certificate (right CA, right name) -> 'tls'", async () => {
    const e = await failure(getAt(opts({ caPem: expiredPki.caPem }), `${expiredUrl}/ok`));
    expect(e.kind).toBe("tls");
    expect(e.message).toMatch(/CERT_HAS_EXPIRED/);
  });

  it("stays verified even with NODE_TLS_REJECT_UNAUTHORIZED=0 in the environment", async () => {
    const saved = process.env.NODE_TLS_REJECT_UNAUTHORIZED;
    process.env.NODE_TLS_REJECT_UNAUTHORIZED = "0";
    try {
      const e = await failure(getAt(opts({ caPem: pki.wrongCaPem }), `${httpsUrl}/ok`));
      expect(e.kind).toBe("tls");
    } finally {
      if (saved === undefined) delete process.env.NODE_TLS_REJECT_UNAUTHORIZED;
      else process.env.NODE_TLS_REJECT_UNAUTHORIZED = saved;
    }
  });

  it("plain http:// is refused unless insecureHttp", async () => {
    const e = await failure(getAt(opts(), `${httpUrl}/ok`));
    expect(e.kind).toBe("config");
    expect(e.hint).toMatch(/insecure_http/);
    expect((await getAt(opts({ insecureHttp: true }), `${httpUrl}/ok`)).status).toBe(200);
  });

  it("503 and 429 are transient, carrying Retry-After (seconds or HTTP date)", async () => {
    scenarios.busy = (_req, res) => res.writeHead(503, { "retry-after": "1" }).end();
    scenarios.e429 = (_req, res) => res.writeHead(429).end();
    scenarios.e500 = (_req, res) => res.writeHead(500).end();
    expect((await transient(getAt(opts(), `${httpsUrl}/busy`))).retryAfterMs).toBe(1000);
    const t = await transient(getAt(opts(), `${httpsUrl}/e429`));
    expect([t.message, t.retryAfterMs]).toEqual([`KBS ${httpsUrl}/e429 (test): HTTP 429`, undefined]);
    expect((await transient(getAt(opts(), `${httpsUrl}/e500`))).message).toMatch(/HTTP 500/);
  });

  it("4xx answers are returned to the caller, not classified", async () => {
    hits.deny = 0;
    scenarios.deny = (_req, res) => res.writeHead(401).end('{"type":"x","detail":"y"}');
    const res = await getAt(opts(), `${httpsUrl}/deny`);
    expect([res.status, Buffer.from(res.body).toString(), hits.deny]).toEqual([401, '{"type":"x","detail":"y"}', 1]);
  });

  it("connection reset and connection refused are transient", async () => {
    resetConnections = 0;
    expect((await transient(getAt(opts(), resetUrl))).message).toMatch(/ECONNRESET|socket|closed/i);
    expect(resetConnections).toBe(1);
    expect((await transient(getAt(opts(), deadUrl))).message).toMatch(/ECONNREFUSED/);
  });

  it("body over the limit is rejected, streamed or declared", async () => {
    scenarios.big = (_req, res) => {
      res.writeHead(200); // chunked, no content-length
      for (let i = 0; i < 8; i++) res.write(Buffer.alloc(1024, 0x41));
      res.end();
    };
    scenarios.declared = (_req, res) => res.writeHead(200, { "content-length": String(4096) }).end(Buffer.alloc(4096));
    const e = await failure(getAt(opts(), `${httpsUrl}/big`, { maxBodyBytes: 2048 }));
    expect(e.kind).toBe("kbs-protocol");
    expect(e.message).toMatch(/more than 2048.*over the 2048-byte limit/);
    const d = await failure(getAt(opts(), `${httpsUrl}/declared`, { maxBodyBytes: 2048 }));
    expect(d.message).toMatch(/is 4096 bytes, over the 2048-byte limit/);
    expect((await getAt(opts(), `${httpsUrl}/big`, { maxBodyBytes: 8192 })).body.length).toBe(8192);
  });

  it("redirects are rejected, not followed", async () => {
    hits.moved = 0;
    scenarios.moved = (_req, res) => res.writeHead(302, { location: `${httpsUrl}/ok/kbs/v0/x` }).end();
    const e = await failure(getAt(opts(), `${httpsUrl}/moved`));
    expect(e.kind).toBe("kbs-protocol");
    expect(e.message).toMatch(/HTTP 302 redirect .*not followed/);
    expect(hits.moved).toBe(1);
  });

  it("per-request timeout bounds a silent server (transient)", async () => {
    scenarios.silent = () => {};
    const t0 = performance.now();
    const e = await transient(getAt(opts({ requestTimeoutMs: 300 }), `${httpsUrl}/silent`));
    const took = performance.now() - t0;
    expect(e.message).toMatch(/no complete answer within 300 ms/);
    expect(took).toBeGreaterThanOrEqual(290);
    expect(took).toBeLessThan(2000);
  });

  it("per-request timeout bounds a slowloris body (one byte at a time, each within bodyTimeout)", async () => {
    scenarios.drip = (_req, res) => {
      res.writeHead(200, { "content-length": "1000" });
      const t = setInterval(() => (res.destroyed ? clearInterval(t) : res.write("x")), 50);
    };
    const t0 = performance.now();
    const e = await transient(getAt(opts({ requestTimeoutMs: 600 }), `${httpsUrl}/drip`));
    expect(e.message).toMatch(/no complete answer within 600 ms/);
    expect(performance.now() - t0).toBeLessThan(2500);
  });

  it("the overall deadline stops a request as 'deadline'", async () => {
    scenarios.silent = () => {};
    const t0 = performance.now();
    const e = await failure(
      getAt(opts({ deadline: new Deadline(400), requestTimeoutMs: 10_000 }), `${httpsUrl}/silent`),
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
