// Fault knobs behave as documented, so client tests that rely on them test something real.
import * as http from "node:http";
import * as net from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import { startTestKbs, type TestKbs } from "../../kbs/server.ts";
import { decryptJwe, rawRequest, sampleHandshake } from "../../kbs/raw-client.ts";

let kbs: TestKbs | undefined;
afterEach(async () => {
  await kbs?.close();
  kbs = undefined;
});

const AUTH = JSON.stringify({ version: "0.4.0", tee: "sample", "extra-params": "" });

function connects(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect(port, "127.0.0.1");
    s.once("connect", () => (s.destroy(), resolve(true)));
    s.once("error", () => resolve(false));
  });
}

describe("fault knobs", () => {
  it("503 with Retry-After N times, then normal; counted per endpoint with arrival times", async () => {
    kbs = await startTestKbs({ faults: { unavailable: { auth: { count: 2, retryAfter: "1" } } } });
    const a = await rawRequest(`${kbs.url}/kbs/v0/auth`, { body: AUTH });
    expect(a.status).toBe(503);
    expect(a.headers["retry-after"]).toBe("1");
    expect((await rawRequest(`${kbs.url}/kbs/v0/auth`, { body: AUTH })).status).toBe(503);
    expect((await rawRequest(`${kbs.url}/kbs/v0/auth`, { body: AUTH })).status).toBe(200);
    expect(kbs.stats.requests.auth).toBe(3);
    expect(kbs.stats.events.map((e) => e.fault ?? e.status)).toEqual(["503", "503", 200]);
    expect(kbs.stats.events[1]!.at).toBeGreaterThanOrEqual(kbs.stats.events[0]!.at);
  });

  it("drop destroys the connection without an answer", async () => {
    kbs = await startTestKbs({ faults: { drop: { auth: 1 } } });
    await expect(rawRequest(`${kbs.url}/kbs/v0/auth`, { body: AUTH })).rejects.toThrow(/socket hang up|ECONNRESET/);
    expect((await rawRequest(`${kbs.url}/kbs/v0/auth`, { body: AUTH })).status).toBe(200);
  });

  it("delay holds the answer", async () => {
    kbs = await startTestKbs({ faults: { delayMs: { auth: 300 } } });
    const t = performance.now();
    await rawRequest(`${kbs.url}/kbs/v0/auth`, { body: AUTH });
    expect(performance.now() - t).toBeGreaterThanOrEqual(290);
  });

  it.each([
    ["truncated", (b: string) => expect(() => JSON.parse(b)).toThrow()],
    ["garbage", (b: string) => expect(b.startsWith("<html>")).toBe(true)],
    ["wrong-shape", (b: string) => expect(JSON.parse(b)).toEqual({ unexpected: true })],
  ] as const)("malformed %s body", async (mode, check) => {
    kbs = await startTestKbs({ faults: { malformed: { auth: { count: 1, mode } } } });
    const r = await rawRequest(`${kbs.url}/kbs/v0/auth`, { body: AUTH });
    expect(r.status).toBe(200);
    check(r.body);
  });

  it("unavailable with status 429; oversized, redirect and slow bodies", async () => {
    kbs = await startTestKbs({
      faults: {
        unavailable: { auth: { count: 1, retryAfter: "3", status: 429 } },
        malformed: { attest: { count: 1, mode: "oversized" } },
      },
    });
    const u = await rawRequest(`${kbs.url}/kbs/v0/auth`, { body: AUTH });
    expect([u.status, u.headers["retry-after"]]).toEqual([429, "3"]);
    kbs.faults.malformed.auth = { count: 1, mode: "redirect" };
    const r = await rawRequest(`${kbs.url}/kbs/v0/auth`, { body: AUTH });
    expect([r.status, r.headers.location]).toEqual([302, "/kbs/v0/auth"]);
    const big = await rawRequest(`${kbs.url}/kbs/v0/attest`, { body: "{}" });
    expect(big.body.length).toBeGreaterThan(2 * 1024 * 1024);
    kbs.faults.malformed.auth = { count: 1, mode: "slow" };
    // slowloris: after 600 ms only a few bytes of the (70-byte) answer have arrived
    const got = await new Promise<number>((resolve, reject) => {
      const req = http.request(`${kbs!.url}/kbs/v0/auth`, { method: "POST" }, (res) => {
        let n = 0;
        res.on("data", (c: Buffer) => (n += c.length));
        res.on("error", () => {});
        setTimeout(() => (req.destroy(), resolve(n)), 600);
      });
      req.on("error", reject);
      req.end(AUTH);
    });
    expect(got).toBeGreaterThanOrEqual(1);
    expect(got).toBeLessThanOrEqual(4);
    expect(kbs.stats.events.map((e) => e.fault)).toEqual([
      "429",
      "malformed:redirect",
      "malformed:oversized",
      "malformed:slow",
    ]);
  });

  it("short-body closes the connection before Content-Length bytes arrived", async () => {
    kbs = await startTestKbs({ faults: { malformed: { auth: { count: 1, mode: "short-body" } } } });
    await expect(rawRequest(`${kbs.url}/kbs/v0/auth`, { body: AUTH })).rejects.toThrow(/aborted|ECONNRESET|hang up/);
  });

  it("refuseConnections closes the port and reopens it after the given time", async () => {
    kbs = await startTestKbs();
    await kbs.refuseConnections(400);
    expect(kbs.listening).toBe(false);
    expect(await connects(kbs.port)).toBe(false);
    await new Promise((r) => setTimeout(r, 600));
    expect(await connects(kbs.port)).toBe(true);
    expect((await rawRequest(`${kbs.url}/kbs/v0/auth`, { body: AUTH })).status).toBe(200);
  });

  it("listenDelayMs refuses connections until the port opens", async () => {
    kbs = await startTestKbs({ listenDelayMs: 400 });
    expect(await connects(kbs.port)).toBe(false);
    await new Promise((r) => setTimeout(r, 600));
    expect(await connects(kbs.port)).toBe(true);
  });

  it("expireSessionAfterAttest: the cookie stops working, the bearer token still does", async () => {
    kbs = await startTestKbs({ resources: { "r/t/k": "v" }, faults: { expireSessionAfterAttest: 1 } });
    const hs = await sampleHandshake(kbs.url);
    const viaCookie = await rawRequest(`${kbs.url}/kbs/v0/resource/r/t/k`, { headers: { cookie: hs.cookie } });
    expect(viaCookie.status).toBe(401);
    expect(JSON.parse(viaCookie.body).type).toMatch(/TokenNotFound$/);
    expect(
      (await rawRequest(`${kbs.url}/kbs/v0/resource/r/t/k`, { headers: { authorization: `Bearer ${hs.token}` } }))
        .status,
    ).toBe(200);
    // Only once: the next handshake keeps its session.
    const hs2 = await sampleHandshake(kbs.url);
    expect((await rawRequest(`${kbs.url}/kbs/v0/resource/r/t/k`, { headers: { cookie: hs2.cookie } })).status).toBe(
      200,
    );
  });

  it("expireTokenAfterAttest: neither the cookie nor the bearer token works, a new handshake does", async () => {
    kbs = await startTestKbs({ resources: { "r/t/k": "v" }, faults: { expireTokenAfterAttest: 1 } });
    const hs = await sampleHandshake(kbs.url);
    const viaCookie = await rawRequest(`${kbs.url}/kbs/v0/resource/r/t/k`, { headers: { cookie: hs.cookie } });
    const viaBearer = await rawRequest(`${kbs.url}/kbs/v0/resource/r/t/k`, {
      headers: { authorization: `Bearer ${hs.token}` },
    });
    expect(JSON.parse(viaCookie.body).type).toMatch(/TokenNotFound$/);
    expect(JSON.parse(viaBearer.body).type).toMatch(/TokenVerifierError$/);
    const hs2 = await sampleHandshake(kbs.url);
    expect(
      (await rawRequest(`${kbs.url}/kbs/v0/resource/r/t/k`, { headers: { authorization: `Bearer ${hs2.token}` } }))
        .status,
    ).toBe(200);
  });

  it("tamperJwe makes the JWE fail authentication once", async () => {
    kbs = await startTestKbs({ resources: { "r/t/k": "v" }, faults: { tamperJwe: { count: 1, part: "tag" } } });
    const hs = await sampleHandshake(kbs.url);
    const bad = await rawRequest(`${kbs.url}/kbs/v0/resource/r/t/k`, { headers: { cookie: hs.cookie } });
    await expect(decryptJwe(bad.body, hs.key)).rejects.toThrow();
    const good = await rawRequest(`${kbs.url}/kbs/v0/resource/r/t/k`, { headers: { cookie: hs.cookie } });
    expect(Buffer.from(await decryptJwe(good.body, hs.key)).toString()).toBe("v");
  });

  it("stripSessionCookie drops Set-Cookie from /auth once; onRequest sees each request's bytes", async () => {
    const seen: { method: string; path: string; body: string }[] = [];
    kbs = await startTestKbs({
      faults: { stripSessionCookie: 1 },
      onRequest: ({ method, path, body }) => seen.push({ method, path, body }),
    });
    const stripped = await rawRequest(`${kbs.url}/kbs/v0/auth`, { body: AUTH });
    expect(stripped.status).toBe(200);
    expect(stripped.headers["set-cookie"]).toBeUndefined();
    expect(kbs.stats.events[0]!.fault).toBe("strip-cookie");
    expect((await rawRequest(`${kbs.url}/kbs/v0/auth`, { body: AUTH })).headers["set-cookie"]?.[0]).toMatch(
      /^kbs-session-id=[0-9a-f]{32}; Expires=/,
    );
    expect(seen).toEqual([
      { method: "POST", path: "/kbs/v0/auth", body: AUTH },
      { method: "POST", path: "/kbs/v0/auth", body: AUTH },
    ]);
  });

  it("faults can be changed at runtime and bodies over 2 MiB get 413", async () => {
    kbs = await startTestKbs();
    kbs.faults.unavailable.attest = { count: 1 };
    const a = await rawRequest(`${kbs.url}/kbs/v0/auth`, { body: AUTH });
    expect(a.status).toBe(200);
    const r = await rawRequest(`${kbs.url}/kbs/v0/attest`, { body: "{}" });
    expect(r.status).toBe(503);
    expect(r.headers["retry-after"]).toBeUndefined();
    const big = await rawRequest(`${kbs.url}/kbs/v0/attest`, { body: "x".repeat(2 * 1024 * 1024 + 1) });
    expect(big.status).toBe(413);
  });
});
