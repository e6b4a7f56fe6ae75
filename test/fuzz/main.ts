// Fuzz harness entry point (docs/FUZZING.md). Runs under bun, the product's runtime:
//
//   npm run fuzz -- [--seconds N] [--executions N] [--seed S] [--target NAME[,NAME...]]
//                   [--crash-dir DIR] [--out FILE.json] [--hang-seconds N] [--list]
//   npm run fuzz -- --target NAME --replay FILE
//
// Budgets are per target. Each target runs in a worker thread under a watchdog (watchdog.ts).
// Prints one row per target (executions, exec/s, crashes, slow inputs, peak RSS); exits 1 when any
// target crashed, hung, or had an input slower than 1 s.
import * as fs from "node:fs";
import * as path from "node:path";
import { describeError, execute, type TargetStats } from "./engine.ts";
import { findTarget as findIn, type FuzzTarget } from "./targets.ts";
import { fuzzInWorker } from "./watchdog.ts";

const ROOT = path.resolve(path.dirname(new URL(import.meta.url).pathname), "../..");

function usage(problem: string): never {
  process.stderr.write(
    `${problem}\nusage: npm run fuzz -- [--seconds N] [--executions N] [--seed S] [--target NAME[,NAME]] [--crash-dir DIR] [--out FILE] [--list]\n` +
      `       npm run fuzz -- --target NAME --replay FILE\n`,
  );
  process.exit(2);
}

function parseArgs(argv: string[]): Map<string, string> {
  const flags = new Map<string, string>();
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (!a.startsWith("--")) usage(`unexpected argument '${a}'`);
    const name = a.slice(2);
    if (name === "list") flags.set(name, "");
    else {
      const v = argv[++i];
      if (v === undefined) usage(`--${name} needs a value`);
      flags.set(name, v);
    }
  }
  for (const k of flags.keys())
    if (
      ![
        "seconds",
        "executions",
        "seed",
        "target",
        "crash-dir",
        "out",
        "list",
        "replay",
        "hang-seconds",
        "targets-module",
      ].includes(k)
    )
      usage(`unknown option --${k}`);
  return flags;
}

function num(flags: Map<string, string>, name: string): number | undefined {
  const v = flags.get(name);
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!Number.isFinite(n) || n < 0) usage(`--${name} must be a non-negative number`);
  return n;
}

async function replay(t: FuzzTarget, file: string): Promise<number> {
  await t.seeds(); // some targets load keys with their seeds
  const outcome = await execute(t, new Uint8Array(fs.readFileSync(file)));
  if (outcome.kind !== "crash") {
    console.log(`${t.name}: ${outcome.kind} (no crash)`);
    return 0;
  }
  console.log(`${t.name}: CRASH\n${describeError(outcome.error).detail}`);
  return 1;
}

const mb = (n: number) => n.toFixed(0);

function row(s: TargetStats): string {
  return [
    s.target.padEnd(22),
    String(s.executions).padStart(9),
    s.execPerSec.toFixed(0).padStart(8),
    `${((100 * s.accepted) / Math.max(1, s.executions)).toFixed(1)}%`.padStart(8),
    String(s.crashes).padStart(7),
    String(s.slow).padStart(5),
    s.slowestMs.toFixed(1).padStart(10),
    mb(s.peakRssMb).padStart(8),
  ].join(" ");
}

async function main(): Promise<number> {
  const flags = parseArgs(process.argv.slice(2));
  // --targets-module: the harness tests plant targets with known bugs (test/unit/fuzz).
  const targetsModule = path.resolve(flags.get("targets-module") ?? path.join(ROOT, "test/fuzz/targets.ts"));
  const { TARGETS } = (await import(targetsModule)) as { TARGETS: FuzzTarget[] };
  const findTarget = (name: string) => {
    try {
      return findIn(name, TARGETS);
    } catch (e) {
      return usage((e as Error).message);
    }
  };
  if (flags.has("list")) {
    for (const t of TARGETS) console.log(`${t.name.padEnd(22)} ${t.about}`);
    return 0;
  }
  const replayFile = flags.get("replay");
  if (replayFile !== undefined) {
    const target = flags.get("target");
    if (!target) usage("--replay needs --target");
    return replay(findTarget(target), replayFile);
  }
  const seed = num(flags, "seed") ?? 1;
  const executions = num(flags, "executions");
  const seconds = num(flags, "seconds") ?? (executions === undefined ? 5 : undefined);
  const hangSeconds = num(flags, "hang-seconds") ?? 30;
  const crashDir = path.resolve(flags.get("crash-dir") ?? path.join(ROOT, ".cache", "fuzz", "crashes"));
  const targets = flags.has("target") ? flags.get("target")!.split(",").map(findTarget) : TARGETS;

  const budget = [
    executions !== undefined ? `${executions} executions` : "",
    seconds !== undefined ? `${seconds} s` : "",
  ].filter(Boolean);
  console.log(
    `fuzz: seed ${seed}, ${budget.join(" or ")} per target, ${targets.length} target(s), crashes to ${crashDir}`,
  );
  console.log(
    `${"target".padEnd(22)} ${"execs".padStart(9)} ${"exec/s".padStart(8)} ${"accepted".padStart(8)} ${"crashes".padStart(7)} ${"slow".padStart(5)} ${"slowest ms".padStart(10)} ${"RSS MB".padStart(8)}`,
  );
  const all: TargetStats[] = [];
  const started = Date.now();
  for (const t of targets) {
    const s = await fuzzInWorker(t, { seed, executions, seconds, crashDir }, hangSeconds, targetsModule);
    all.push(s);
    console.log(row(s));
    for (const f of s.findings)
      console.log(`  ${f.kind}: ${f.signature}\n    reproduce: npm run fuzz -- --target ${t.name} --replay ${f.file}`);
  }
  const crashes = all.reduce((n, s) => n + s.crashes, 0);
  // A hang counts as a slow input (it is one that never finished).
  const slow = all.reduce((n, s) => n + s.slow, 0);
  const peak = Math.max(...all.map((s) => s.peakRssMb));
  const total = all.reduce((n, s) => n + s.executions, 0);
  console.log(
    `total: ${total} executions in ${((Date.now() - started) / 1000).toFixed(0)} s, ${crashes} crash(es), ${slow} slow input(s), peak RSS ${mb(peak)} MB (${process.versions.bun ? `bun ${process.versions.bun}` : `node ${process.versions.node}`})`,
  );
  const out = flags.get("out");
  if (out !== undefined) {
    const summary = {
      command: `npm run fuzz -- ${process.argv.slice(2).join(" ")}`,
      seed,
      runtime: process.versions.bun ? `bun ${process.versions.bun}` : `node ${process.versions.node}`,
      date: new Date().toISOString(),
      targets: all.map(({ findings, ...s }) => ({ ...s, findings: findings.map(({ input: _, ...f }) => f) })),
    };
    fs.mkdirSync(path.dirname(path.resolve(out)), { recursive: true });
    fs.writeFileSync(out, JSON.stringify(summary, null, 2) + "\n");
  }
  return crashes + slow > 0 ? 1 : 0;
}

process.exitCode = await main();
