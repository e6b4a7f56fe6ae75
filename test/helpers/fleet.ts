// A fleet of agents (the compiled binary) against test-KBS replicas that do NOT share sessions or
// token keys, behind HAProxy in TCP mode with round-robin on 127.0.0.1, with injected faults.
// Used by test/integration/fleet.test.ts (small, CI) and bench/fleet.ts (`npm run bench:fleet`).
// HAProxy runs from its own config in a temp dir (no system service) and is stopped by stop().
import { spawn, type ChildProcess } from "node:child_process";
import * as crypto from "node:crypto";
import * as fs from "node:fs";
import * as net from "node:net";
import * as os from "node:os";
import * as path from "node:path";
import { startTestKbs, type TestKbs } from "../kbs/server.ts";
import type { Faults } from "../kbs/faults.ts";
import { runCli, type RunResult } from "./binary.ts";
import { createPki, type Pki } from "./pki.ts";

export const FLEET_RESOURCE = "default/key/root";

export interface FleetOptions {
  agents: number;
  replicas: number;
  /** Faults per replica (counted: each fires that many times on that replica). */
  faults: (replica: number) => Partial<Faults>;
  /** Agents started at once (default all). */
  concurrency?: number;
  deadlineS?: number;
}

export interface FleetResult {
  agents: number;
  replicas: number;
  succeeded: number;
  failures: { code: number | null; stderr: string }[];
  latenciesMs: number[];
  /** /auth + /attest + /resource requests over all replicas. */
  kbsRequests: number;
  requestsPerReplica: number[];
  /** Faults that actually fired (503, drop, ...), over all replicas. */
  faultsFired: Record<string, number>;
  /** /attest refusals because the session was not on the replica that answered. */
  sessionsLost: number;
  wallMs: number;
}

async function freePort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((r) => s.listen(0, "127.0.0.1", r));
  const port = (s.address() as net.AddressInfo).port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

async function waitForPort(port: number, ms: number): Promise<void> {
  const end = Date.now() + ms;
  for (;;) {
    const ok = await new Promise<boolean>((resolve) => {
      const s = net.connect(port, "127.0.0.1", () => (s.destroy(), resolve(true)));
      s.on("error", () => resolve(false));
    });
    if (ok) return;
    if (Date.now() > end) throw new Error(`haproxy did not listen on 127.0.0.1:${port} within ${ms} ms`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** HAProxy in TCP mode, round-robin per connection over `backends`, from a config in `dir`. */
export async function startHaproxy(
  dir: string,
  backends: number[],
): Promise<{ port: number; stop(): Promise<void>; log(): string }> {
  const port = await freePort();
  const cfg = path.join(dir, "haproxy.cfg");
  fs.writeFileSync(
    cfg,
    [
      "global",
      "  maxconn 4096",
      "defaults",
      "  mode tcp",
      "  timeout connect 2s",
      "  timeout client 60s",
      "  timeout server 60s",
      "frontend kbs",
      `  bind 127.0.0.1:${port}`,
      "  default_backend replicas",
      "backend replicas",
      "  balance roundrobin",
      ...backends.map((p, i) => `  server replica${i + 1} 127.0.0.1:${p}`),
      "",
    ].join("\n"),
  );
  let output = "";
  // -db: stay in the foreground, no daemon; the test owns the process.
  const child: ChildProcess = spawn("haproxy", ["-db", "-f", cfg], { stdio: ["ignore", "pipe", "pipe"] });
  child.stdout!.on("data", (d: Buffer) => (output += d.toString()));
  child.stderr!.on("data", (d: Buffer) => (output += d.toString()));
  const exited = new Promise<void>((r) => child.once("exit", () => r()));
  try {
    await Promise.race([
      waitForPort(port, 10_000),
      exited.then(() => {
        throw new Error(`haproxy exited at start: ${output}`);
      }),
    ]);
  } catch (e) {
    child.kill("SIGKILL");
    throw e;
  }
  return {
    port,
    log: () => output,
    async stop() {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill("SIGTERM");
        const t = setTimeout(() => child.kill("SIGKILL"), 3000);
        await exited;
        clearTimeout(t);
      }
    },
  };
}

function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!;
}

export function summarize(r: FleetResult): {
  p50: number;
  p95: number;
  requestsPerUnlock: number;
} {
  const sorted = [...r.latenciesMs].sort((a, b) => a - b);
  return {
    p50: percentile(sorted, 50),
    p95: percentile(sorted, 95),
    requestsPerUnlock: r.succeeded > 0 ? r.kbsRequests / r.succeeded : NaN,
  };
}

/** Start the replicas and HAProxy, run the agents, stop everything, return what happened. */
export async function runFleet(o: FleetOptions): Promise<FleetResult> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "cvm-fleet-"));
  const pki: Pki = createPki({ dir: path.join(dir, "pki") });
  const secret = crypto.randomBytes(32);
  const replicas: TestKbs[] = [];
  let proxy: Awaited<ReturnType<typeof startHaproxy>> | undefined;
  try {
    for (let i = 0; i < o.replicas; i++)
      replicas.push(await startTestKbs({ tls: pki.tls, resources: { [FLEET_RESOURCE]: secret }, faults: o.faults(i) }));
    proxy = await startHaproxy(
      dir,
      replicas.map((r) => r.port),
    );
    const url = `https://127.0.0.1:${proxy.port}`;
    const args = [
      "fetch",
      FLEET_RESOURCE,
      "--kbs",
      url,
      "--ca",
      pki.caFile,
      "--tee",
      "sample",
      "--allow-sample",
      ...(o.deadlineS !== undefined ? ["--deadline", String(o.deadlineS)] : []),
    ];
    const results: RunResult[] = [];
    const started = performance.now();
    let next = 0;
    const worker = async () => {
      while (next < o.agents) {
        next++;
        results.push(await runCli(args, { timeoutMs: ((o.deadlineS ?? 300) + 30) * 1000 }));
      }
    };
    await Promise.all(Array.from({ length: Math.min(o.agents, o.concurrency ?? o.agents) }, worker));
    const wallMs = performance.now() - started;
    const ok = results.filter((r) => r.code === 0 && r.stdout.equals(secret));
    const faultsFired: Record<string, number> = {};
    for (const r of replicas)
      for (const e of r.stats.events) if (e.fault) faultsFired[e.fault] = (faultsFired[e.fault] ?? 0) + 1;
    const count = (r: TestKbs) => r.stats.requests.auth + r.stats.requests.attest + r.stats.requests.resource;
    return {
      agents: o.agents,
      replicas: o.replicas,
      succeeded: ok.length,
      failures: results
        .filter((r) => !(r.code === 0 && r.stdout.equals(secret)))
        .map((r) => ({ code: r.code, stderr: r.stderr.slice(-2000) })),
      latenciesMs: ok.map((r) => r.durationMs),
      kbsRequests: replicas.reduce((n, r) => n + count(r), 0),
      requestsPerReplica: replicas.map(count),
      faultsFired,
      sessionsLost: replicas.reduce(
        (n, r) => n + r.stats.errors.filter((e) => /^session (not found|expired)/.test(e.reason ?? "")).length,
        0,
      ),
      wallMs,
    };
  } finally {
    await proxy?.stop();
    for (const r of replicas) await r.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
}
