// Side-by-side benchmark, one process, interleaved runs (these machines are shared and noisy):
//   cvm-unlock fetch   dist/cvm-unlock against the test KBS on loopback (HTTPS, private CA)
//   clevis decrypt     the established network-unlock tool against tang on loopback
//   startup            dist/cvm-unlock version
// Reports wall-time p50/p95, peak RSS (GNU time) and cvm-unlock's per-phase p50/p95, as JSON
// (--out FILE) and as a markdown table on stdout. Usage: bun bench/bench.ts [--runs N] [--tee sample|tpm]
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { arg, BINARY as bin, freePort, ROOT as root, startBenchKbs, startChild, stats, waitPort } from "./fixture.ts";

const runs = Number(arg("runs", "30"));
const tee = arg("tee", "tpm");
const outFile = arg(
  "out",
  path.join(root, "bench", "results", `bench-${new Date().toISOString().replace(/[:.]/g, "-")}.json`),
);

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

async function main(): Promise<void> {
  if (!fs.existsSync(bin)) throw new Error("dist/cvm-unlock missing: run npm run build");
  const work = fs.mkdtempSync(path.join(os.tmpdir(), "cvm-bench-"));
  const { secret, cliArgs, tpm } = await startBenchKbs(work, tee);
  cliArgs.push("--log-format", "json");

  // tang + a clevis JWE bound to it
  const tangDb = path.join(work, "tang");
  fs.mkdirSync(tangDb);
  spawnSync("/usr/libexec/tangd-keygen", [tangDb], { stdio: "inherit" });
  const tangPort = await freePort();
  startChild("socat", [`TCP-LISTEN:${tangPort},bind=127.0.0.1,reuseaddr,fork`, `EXEC:/usr/libexec/tangd ${tangDb}`]);
  await waitPort(tangPort, "tang");
  const enc = spawnSync("clevis", ["encrypt", "tang", JSON.stringify({ url: `http://127.0.0.1:${tangPort}` }), "-y"], {
    input: secret,
  });
  if (enc.status !== 0) throw new Error(`clevis encrypt failed: ${enc.stderr}`);
  const jwe = enc.stdout;

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
