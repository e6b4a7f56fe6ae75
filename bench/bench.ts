// Side-by-side benchmark, one process, interleaved runs (these machines are shared and noisy):
//   cvm-unlock fetch   dist/cvm-unlock against the test KBS on loopback (HTTPS, private CA)
//   clevis decrypt     the established network-unlock tool against tang on loopback
//   startup            dist/cvm-unlock version
// Reports wall-time p50/p95, peak RSS (GNU time) and cvm-unlock's per-phase p50/p95, as JSON
// (--out FILE) and as a markdown table on stdout. Usage: bun bench/bench.ts [--runs N] [--tee sample|tpm]
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import * as fs from "node:fs";
import * as net from "node:net";
import * as os from "node:os";
import * as path from "node:path";
import { startSwtpm, type Swtpm } from "../test/helpers/swtpm.ts";

const root = path.resolve(path.dirname(new URL(import.meta.url).pathname), "..");
const bin = path.join(root, "dist", "cvm-unlock");
const bun = path.join(root, "node_modules", ".bin", "bun");

function arg(name: string, def: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 && process.argv[i + 1] ? process.argv[i + 1]! : def;
}
const runs = Number(arg("runs", "30"));
const tee = arg("tee", "tpm");
const outFile = arg(
  "out",
  path.join(root, "bench", "results", `bench-${new Date().toISOString().replace(/[:.]/g, "-")}.json`),
);

const children: ChildProcess[] = [];
process.on("exit", () => children.forEach((c) => c.kill("SIGTERM")));

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.listen(0, "127.0.0.1", () => {
      const port = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(port));
    });
    s.on("error", reject);
  });
}

async function waitFor(cond: () => boolean, what: string, ms = 20_000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

async function waitPort(port: number, what: string): Promise<void> {
  const end = Date.now() + 20_000;
  for (;;) {
    const ok = await new Promise<boolean>((resolve) => {
      const s = net.connect(port, "127.0.0.1", () => (s.destroy(), resolve(true)));
      s.on("error", () => resolve(false));
    });
    if (ok) return;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what} on port ${port}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

function start(cmd: string, args: string[], opts: { cwd?: string } = {}): ChildProcess {
  const c = spawn(cmd, args, { stdio: ["ignore", "ignore", "pipe"], ...opts });
  let err = "";
  c.stderr?.on("data", (d) => (err = (err + d).slice(-4000)));
  c.on("exit", (code) => {
    if (code && code !== 143) process.stderr.write(`${cmd} exited ${code}: ${err}\n`);
  });
  children.push(c);
  return c;
}

interface Sample {
  wallMs: number;
  rssKb: number;
}

/** Run a command under GNU time; wall clock measured here, identically for both tools. */
function timed(cmd: string, args: string[], input?: Buffer): Sample & { stdout: Buffer; stderr: string } {
  const t0 = performance.now();
  const r = spawnSync("/usr/bin/time", ["-f", "RSSKB=%M", cmd, ...args], { input, maxBuffer: 1 << 20 });
  const wallMs = performance.now() - t0;
  const stderr = r.stderr.toString();
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(" ")} failed (${r.status}): ${stderr.slice(-2000)}`);
  const m = /RSSKB=(\d+)/.exec(stderr);
  return { wallMs, rssKb: m ? Number(m[1]) : NaN, stdout: r.stdout, stderr };
}

function pct(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))]!;
}
const stats = (xs: number[]) => ({ p50: +pct(xs, 50).toFixed(1), p95: +pct(xs, 95).toFixed(1), n: xs.length });

async function main(): Promise<void> {
  if (!fs.existsSync(bin)) throw new Error("dist/cvm-unlock missing: run npm run build");
  const work = fs.mkdtempSync(path.join(os.tmpdir(), "cvm-bench-"));
  const secret = randomBytes(32);
  fs.writeFileSync(path.join(work, "secret"), secret, { mode: 0o600 });

  // tang + a clevis JWE bound to it
  const tangDb = path.join(work, "tang");
  fs.mkdirSync(tangDb);
  spawnSync("/usr/libexec/tangd-keygen", [tangDb], { stdio: "inherit" });
  const tangPort = await freePort();
  start("socat", [`TCP-LISTEN:${tangPort},bind=127.0.0.1,reuseaddr,fork`, `EXEC:/usr/libexec/tangd ${tangDb}`]);
  await waitPort(tangPort, "tang");
  const enc = spawnSync("clevis", ["encrypt", "tang", JSON.stringify({ url: `http://127.0.0.1:${tangPort}` }), "-y"], {
    input: secret,
  });
  if (enc.status !== 0) throw new Error(`clevis encrypt failed: ${enc.stderr}`);
  const jwe = enc.stdout;

  // test KBS (HTTPS, private CA) in its own process, and for tee tpm an swtpm with the AK persisted
  // at trustee's default handle 0x81010002 (how trustee's attester expects a TPM to be provisioned).
  const kbsPort = await freePort();
  const tlsDir = path.join(work, "tls");
  const ready = path.join(work, "kbs.ready");
  const cliArgs = ["--tee", tee];
  let tpm: Swtpm | undefined;
  if (tee === "tpm") {
    tpm = await startSwtpm({ ekCerts: false });
    await tpm.persistAk(0x81010002);
    cliArgs.push("--tpm", tpm.spec);
  } else cliArgs.push("--allow-sample");
  start(bun, [
    path.join(root, "test/kbs/main.ts"),
    "--port",
    String(kbsPort),
    "--host",
    "127.0.0.1",
    "--tls-dir",
    tlsDir,
    "--resource",
    `default/key/root=@${path.join(work, "secret")}`,
    "--policy",
    "allow",
    "--allow-tee",
    tee,
    "--ready-file",
    ready,
  ]);
  await waitFor(() => fs.existsSync(ready), "test KBS");
  cliArgs.push("--kbs", `https://127.0.0.1:${kbsPort}`, "--ca", path.join(tlsDir, "ca.pem"), "--log-format", "json");
  // Variant without a persistent AK: point at an empty handle, so the agent derives the AK
  // (TPM2_CreatePrimary, an RSA key generation whose time varies with the primes found).
  const derivedCfg = path.join(work, "derived-ak.json");
  fs.writeFileSync(derivedCfg, JSON.stringify({ platform: { tpm_ak_handle: "0x81010003" } }));
  const variants =
    tee === "tpm"
      ? [
          { name: "persistent AK", extra: [] as string[] },
          { name: "derived AK", extra: ["--config", derivedCfg] },
        ]
      : [{ name: tee, extra: [] as string[] }];

  const fetchS = new Map<string, Sample[]>(variants.map((v) => [v.name, []]));
  const clevisS: Sample[] = [],
    startupS: Sample[] = [];
  const phases = new Map<string, Map<string, number[]>>(variants.map((v) => [v.name, new Map()]));
  const timingsFile = path.join(work, "timings.json");
  const warm = 3;
  const jobs = [
    ...variants.map((v) => ({ kind: "cvm" as const, v })),
    { kind: "clevis" as const },
    { kind: "startup" as const },
  ];
  for (let i = 0; i < runs + warm; i++) {
    // rotate the order every run so that no tool always runs right after another
    const order = jobs.map((_, k) => jobs[(k + i) % jobs.length]!);
    for (const job of order) {
      if (job.kind === "cvm") {
        const r = timed(bin, ["fetch", "default/key/root", ...cliArgs, ...job.v.extra, "--timings-json", timingsFile]);
        if (!r.stdout.equals(secret)) throw new Error("cvm-unlock returned the wrong secret");
        if (i >= warm) {
          fetchS.get(job.v.name)!.push(r);
          const t = JSON.parse(fs.readFileSync(timingsFile, "utf8")) as { phases: { phase: string; ms: number }[] };
          const ph = phases.get(job.v.name)!;
          for (const p of t.phases) ph.set(p.phase, [...(ph.get(p.phase) ?? []), p.ms]);
        }
      } else if (job.kind === "clevis") {
        const r = timed("clevis", ["decrypt"], jwe);
        if (!r.stdout.equals(secret)) throw new Error("clevis returned the wrong secret");
        if (i >= warm) clevisS.push(r);
      } else {
        const r = timed(bin, ["version"]);
        if (i >= warm) startupS.push(r);
      }
    }
  }
  await tpm?.stop();
  const summary = (xs: Sample[]) => ({
    wall_ms: stats(xs.map((s) => s.wallMs)),
    peak_rss_mb: stats(xs.map((s) => s.rssKb / 1024)),
  });
  const result = {
    date: new Date().toISOString(),
    machine: { cpus: os.cpus().length, model: os.cpus()[0]?.model, kernel: os.release() },
    runs,
    tee,
    cvm_unlock_fetch: Object.fromEntries(variants.map((v) => [v.name, summary(fetchS.get(v.name)!)])),
    clevis_tang_decrypt: summary(clevisS),
    cvm_unlock_startup: summary(startupS),
    phases_ms: Object.fromEntries(
      variants.map((v) => [v.name, Object.fromEntries([...phases.get(v.name)!].map(([k, x]) => [k, stats(x)]))]),
    ),
  };
  const clevisP50 = result.clevis_tang_decrypt.wall_ms.p50;
  const ratios = Object.fromEntries(
    variants.map((v) => [v.name, +(result.cvm_unlock_fetch[v.name]!.wall_ms.p50 / clevisP50).toFixed(3)]),
  );
  fs.mkdirSync(path.dirname(outFile), { recursive: true });
  fs.writeFileSync(outFile, JSON.stringify({ ...result, ratio_p50: ratios }, null, 2) + "\n");
  const row = (name: string, s: ReturnType<typeof summary>) =>
    `| ${name} | ${s.wall_ms.p50} | ${s.wall_ms.p95} | ${s.peak_rss_mb.p50.toFixed(1)} |`;
  console.log(`\n${runs} interleaved runs, tee ${tee}, ${os.cpus().length} CPUs (${result.machine.model})\n`);
  console.log("| command | wall p50 ms | wall p95 ms | peak RSS MB |\n|---|---|---|---|");
  for (const v of variants)
    console.log(row(`cvm-unlock fetch, ${v.name} (test KBS, HTTPS)`, result.cvm_unlock_fetch[v.name]!));
  console.log(row("clevis decrypt (tang, HTTP)", result.clevis_tang_decrypt));
  console.log(row("cvm-unlock version (startup)", result.cvm_unlock_startup));
  console.log("");
  for (const v of variants)
    console.log(`fetch (${v.name}) / clevis, p50: ${ratios[v.name]!.toFixed(2)} (target <= 0.75)`);
  const names = [...new Set(variants.flatMap((v) => [...phases.get(v.name)!.keys()]))];
  console.log(
    `\n| phase | ${variants.map((v) => `${v.name} p50 / p95 ms`).join(" | ")} |\n|---|${variants.map(() => "---").join("|")}|`,
  );
  for (const n of names)
    console.log(
      `| ${n} | ${variants
        .map((v) => {
          const x = result.phases_ms[v.name]![n];
          return x ? `${x.p50} / ${x.p95}` : "-";
        })
        .join(" | ")} |`,
    );
  console.log(`\nJSON: ${path.relative(root, outFile)}`);
  fs.rmSync(work, { recursive: true, force: true });
}

main().then(
  () => process.exit(0),
  (e) => {
    console.error(`bench failed: ${(e as Error).message}`);
    process.exit(1);
  },
);
