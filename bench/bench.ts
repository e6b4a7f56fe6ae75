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

const root = path.resolve(path.dirname(new URL(import.meta.url).pathname), "..");
const bin = path.join(root, "dist", "cvm-unlock");
const bun = path.join(root, "node_modules", ".bin", "bun");

function arg(name: string, def: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 && process.argv[i + 1] ? process.argv[i + 1]! : def;
}
const runs = Number(arg("runs", "30"));
const tee = arg("tee", "tpm");
const outFile = arg("out", path.join(root, "bench", "results", `bench-${new Date().toISOString().replace(/[:.]/g, "-")}.json`));

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
  const enc = spawnSync("clevis", ["encrypt", "tang", JSON.stringify({ url: `http://127.0.0.1:${tangPort}` }), "-y"], { input: secret });
  if (enc.status !== 0) throw new Error(`clevis encrypt failed: ${enc.stderr}`);
  const jwe = enc.stdout;

  // test KBS (HTTPS, private CA) and, for tee tpm, swtpm
  const kbsPort = await freePort();
  const tlsDir = path.join(work, "tls");
  const ready = path.join(work, "kbs.ready");
  const cliArgs = ["--tee", tee];
  let swtpmPort = 0;
  if (tee === "tpm") {
    swtpmPort = await freePort();
    const state = path.join(work, "swtpm");
    fs.mkdirSync(state);
    // A freshly manufactured TPM is enough: the AK is derived under the endorsement hierarchy.
    start("swtpm", ["socket", "--tpm2", "--tpmstate", `dir=${state}`, "--server", `type=tcp,port=${swtpmPort},bindaddr=127.0.0.1`, "--ctrl", `type=tcp,port=${swtpmPort + 1},bindaddr=127.0.0.1`, "--flags", "not-need-init,startup-clear"]);
    await waitPort(swtpmPort, "swtpm");
    cliArgs.push("--tpm", `swtpm:127.0.0.1:${swtpmPort}`);
  } else cliArgs.push("--allow-sample");
  start(bun, [path.join(root, "test/kbs/main.ts"), "--port", String(kbsPort), "--host", "127.0.0.1", "--tls-dir", tlsDir, "--resource", `default/key/root=@${path.join(work, "secret")}`, "--policy", "allow", "--allow-tee", tee, "--ready-file", ready]);
  await waitFor(() => fs.existsSync(ready), "test KBS");
  cliArgs.push("--kbs", `https://127.0.0.1:${kbsPort}`, "--ca", path.join(tlsDir, "ca.pem"), "--log-format", "json");

  const fetchS: Sample[] = [], clevisS: Sample[] = [], startupS: Sample[] = [];
  const phases = new Map<string, number[]>();
  const timingsFile = path.join(work, "timings.json");
  const warm = 3;
  for (let i = 0; i < runs + warm; i++) {
    const order = i % 2 === 0 ? ["cvm", "clevis", "startup"] : ["clevis", "startup", "cvm"];
    for (const which of order) {
      if (which === "cvm") {
        const r = timed(bin, ["fetch", "default/key/root", ...cliArgs, "--timings-json", timingsFile]);
        if (!r.stdout.equals(secret)) throw new Error("cvm-unlock returned the wrong secret");
        if (i >= warm) {
          fetchS.push(r);
          const t = JSON.parse(fs.readFileSync(timingsFile, "utf8")) as { phases: { phase: string; ms: number }[] };
          for (const p of t.phases) phases.set(p.phase, [...(phases.get(p.phase) ?? []), p.ms]);
        }
      } else if (which === "clevis") {
        const r = timed("clevis", ["decrypt"], jwe);
        if (!r.stdout.equals(secret)) throw new Error("clevis returned the wrong secret");
        if (i >= warm) clevisS.push(r);
      } else {
        const r = timed(bin, ["version"]);
        if (i >= warm) startupS.push(r);
      }
    }
  }
  const result = {
    date: new Date().toISOString(),
    machine: { cpus: os.cpus().length, model: os.cpus()[0]?.model, kernel: os.release() },
    runs,
    tee,
    cvm_unlock_fetch: { wall_ms: stats(fetchS.map((s) => s.wallMs)), peak_rss_mb: stats(fetchS.map((s) => s.rssKb / 1024)) },
    clevis_tang_decrypt: { wall_ms: stats(clevisS.map((s) => s.wallMs)), peak_rss_mb: stats(clevisS.map((s) => s.rssKb / 1024)) },
    cvm_unlock_startup: { wall_ms: stats(startupS.map((s) => s.wallMs)), peak_rss_mb: stats(startupS.map((s) => s.rssKb / 1024)) },
    phases_ms: Object.fromEntries([...phases].map(([k, v]) => [k, stats(v)])),
  };
  const ratio = result.cvm_unlock_fetch.wall_ms.p50 / result.clevis_tang_decrypt.wall_ms.p50;
  fs.mkdirSync(path.dirname(outFile), { recursive: true });
  fs.writeFileSync(outFile, JSON.stringify({ ...result, ratio_p50: +ratio.toFixed(3) }, null, 2) + "\n");
  const row = (name: string, s: { wall_ms: ReturnType<typeof stats>; peak_rss_mb: ReturnType<typeof stats> }) =>
    `| ${name} | ${s.wall_ms.p50} | ${s.wall_ms.p95} | ${s.peak_rss_mb.p50.toFixed(1)} |`;
  console.log(`\n${runs} interleaved runs, tee ${tee}, ${os.cpus().length} CPUs (${result.machine.model})\n`);
  console.log("| command | wall p50 ms | wall p95 ms | peak RSS MB |\n|---|---|---|---|");
  console.log(row("cvm-unlock fetch (test KBS, HTTPS)", result.cvm_unlock_fetch));
  console.log(row("clevis decrypt (tang, HTTP)", result.clevis_tang_decrypt));
  console.log(row("cvm-unlock version (startup)", result.cvm_unlock_startup));
  console.log(`\nfetch / clevis (p50): ${ratio.toFixed(2)} (target <= 0.75)\n`);
  console.log("| phase | p50 ms | p95 ms |\n|---|---|---|");
  for (const [k, v] of Object.entries(result.phases_ms)) console.log(`| ${k} | ${v.p50} | ${v.p95} |`);
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
