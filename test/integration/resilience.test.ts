// The compiled binary rides out outages with its DEFAULT settings, and a fleet of agents gets the
// key through a TCP load balancer (HAProxy, round-robin) over test-KBS replicas that do not share
// sessions, with injected 503s and dropped connections. Figures: `npm run bench:fleet`.
import * as crypto from "node:crypto";
import * as fs from "node:fs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { configSchema } from "../../agent/config/schema.ts";
import { ensureBinary, runCli } from "../helpers/binary.ts";
import { runFleet, summarize } from "../helpers/fleet.ts";
import { createPki, type Pki } from "../helpers/pki.ts";
import { startTestKbs, type TestKbs } from "../kbs/server.ts";

const RESOURCE = "default/key/root";
let pki: Pki;

beforeAll(() => {
  ensureBinary();
  pki = createPki();
});
afterAll(() => fs.rmSync(pki.dir, { recursive: true, force: true }));

describe("default settings", () => {
  it("a KBS that starts 8 s late: fetch with no deadline or retry settings gets the key", async () => {
    expect(configSchema.parse({}, "").deadline_s).toBeGreaterThanOrEqual(60 + 30); // the 60 s claim, with room
    const secret = crypto.randomBytes(32);
    const kbs: TestKbs = await startTestKbs({ tls: pki.tls, resources: { [RESOURCE]: secret }, listenDelayMs: 8000 });
    try {
      const t0 = Date.now();
      const r = await runCli(
        ["fetch", RESOURCE, "--kbs", kbs.url, "--ca", pki.caFile, "--tee", "sample", "--allow-sample"],
        { timeoutMs: 60_000 },
      );
      expect(r.code, r.stderr).toBe(0);
      expect(r.stdout.equals(secret)).toBe(true);
      const served = kbs.stats.events[0]!.at - t0;
      expect(served).toBeGreaterThanOrEqual(7900);
      // found within one backoff cap (5 s) of coming up, plus process start
      expect(r.durationMs).toBeLessThan(8000 + 5000 + 3000);
      const retries = r.stderr.split("\n").filter((l) => /ECONNREFUSED[^;]*; retry in \d+ ms/.test(l));
      expect(retries.length).toBeGreaterThan(3);
      expect(r.stderr).toMatch(/kbs: resource released .*attempts=\d+ endpoints=1 waited_ms=\d+/);
    } finally {
      await kbs.close();
    }
  });
});

describe("fleet behind a TCP load balancer", () => {
  it("6 agents, 2 session-isolated replicas behind HAProxy (TCP, round-robin), 503s and drops at every phase: everyone gets the key", async () => {
    const r = await runFleet({
      agents: 6,
      replicas: 2,
      deadlineS: 60,
      faults: () => ({
        unavailable: { auth: { count: 1 }, attest: { count: 1 }, resource: { count: 1 } },
        drop: { auth: 1, attest: 1, resource: 1 },
      }),
    });
    const s = summarize(r);
    console.log(
      `fleet: ${r.succeeded}/${r.agents} agents, replicas ${r.requestsPerReplica.join("/")} requests, faults ${JSON.stringify(r.faultsFired)}, p50 ${s.p50.toFixed(0)} ms, p95 ${s.p95.toFixed(0)} ms, ${s.requestsPerUnlock.toFixed(2)} KBS requests per unlock`,
    );
    expect(r.failures, JSON.stringify(r.failures)).toEqual([]);
    expect(r.succeeded).toBe(6);
    expect(r.requestsPerReplica.every((n) => n > 0)).toBe(true); // the balancer used both
    expect(r.faultsFired).toEqual({ "503": 6, drop: 6 });
    // one flow, one connection: no handshake was split across replicas
    expect(r.sessionsLost).toBe(0);
  });
});
