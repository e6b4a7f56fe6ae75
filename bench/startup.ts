// Start-up benchmark (docs/PERFORMANCE.md "Runtime start-up under TCG"): binary variants side by
// side, interleaved, each running `fetch --tee tpm` against the local test KBS and swtpm. With
// --tcg every run goes through qemu-x86_64 (user-mode TCG): the same translator a TCG guest uses,
// so what the runtime's start-up costs in a TCG boot shows up in seconds without booting a VM.
// Reports per variant: wall time, the agent's own total (--timings-json) and their difference,
// the runtime start-up (exec, runtime init, loading the embedded program).
//   bun bench/startup.ts [--runs N] [--tcg] [NAME=BINARY[,ENV=VALUE...] ...]   (default: dist/cvm-unlock)
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { arg, BINARY, startBenchKbs, stats } from "./fixture.ts";

interface Variant {
  name: string;
  binary: string;
  env: Record<string, string>;
}

function parseVariant(spec: string): Variant {
  const [head, ...envs] = spec.split(",");
  const eq = head!.indexOf("=");
  if (eq <= 0) throw new Error(`variant '${spec}': expected NAME=BINARY[,ENV=VALUE...]`);
  const env = Object.fromEntries(envs.map((e) => [e.slice(0, e.indexOf("=")), e.slice(e.indexOf("=") + 1)]));
  return { name: head!.slice(0, eq), binary: path.resolve(head!.slice(eq + 1)), env };
}

const runs = Number(arg("runs", "10"));
const tcg = process.argv.includes("--tcg");
const specs = process.argv.slice(2).filter((a, i, all) => /^[\w.-]+=/.test(a) && all[i - 1] !== "--runs");
const variants = specs.length ? specs.map(parseVariant) : [{ name: "dist", binary: BINARY, env: {} }];

async function main(): Promise<void> {
  const work = fs.mkdtempSync(path.join(os.tmpdir(), "cvm-startup-"));
  const { secret, cliArgs, tpm } = await startBenchKbs(work, "tpm");
  const timings = path.join(work, "timings.json");
  const wall = new Map<string, number[]>(variants.map((v) => [v.name, []]));
  const agent = new Map<string, number[]>(variants.map((v) => [v.name, []]));
  for (let i = 0; i < runs + 1; i++) {
    for (let k = 0; k < variants.length; k++) {
      const v = variants[(k + i) % variants.length]!;
      const argv = [v.binary, "fetch", "default/key/root", ...cliArgs, "--timings-json", timings];
      const [cmd, ...args] = tcg ? ["qemu-x86_64", ...argv] : argv;
      const t0 = performance.now();
      const r = spawnSync(cmd!, args, { env: { PATH: process.env.PATH, ...v.env }, maxBuffer: 1 << 20 });
      const ms = performance.now() - t0;
      if (r.status !== 0 || !r.stdout.equals(secret))
        throw new Error(`${v.name}: fetch failed (${r.status}): ${r.stderr.toString().slice(-2000)}`);
      if (i === 0) continue; // warm-up: page cache
      const total = (JSON.parse(fs.readFileSync(timings, "utf8")) as { total_ms: number }).total_ms;
      wall.get(v.name)!.push(ms);
      agent.get(v.name)!.push(total);
    }
  }
  await tpm?.stop();
  fs.rmSync(work, { recursive: true, force: true });
  console.log(
    `\n${runs} interleaved runs per variant${tcg ? " under qemu-x86_64 (TCG)" : ""}, ${os.cpus().length} CPUs\n`,
  );
  console.log("| variant | wall p50 ms | agent total p50 ms | start-up (wall - agent) p50 ms |\n|---|---:|---:|---:|");
  for (const v of variants) {
    const w = wall.get(v.name)!;
    const a = agent.get(v.name)!;
    console.log(`| ${v.name} | ${stats(w).p50} | ${stats(a).p50} | ${stats(w.map((x, j) => x - a[j]!)).p50} |`);
  }
}

main().then(
  () => process.exit(0),
  (e) => {
    console.error(`startup bench failed: ${(e as Error).message}`);
    process.exit(1);
  },
);
