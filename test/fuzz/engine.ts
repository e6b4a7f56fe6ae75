// The fuzz loop for one target: pick a corpus entry, mutate it, fix its checksums (most of the time),
// run the parser, classify the outcome. Inputs a parser accepts join the corpus, so later mutations
// start from structures that already get past the early checks. The input sequence depends only on
// (seed, target name): a time budget changes how far the run gets, never what it tries.
import { createHash } from "node:crypto";
import * as fs from "node:fs";
import * as path from "node:path";
import { CvmError } from "../../platform/util/errors.ts";
import { prng } from "../helpers/prng.ts";
import { mutatorOf, REFUSED, type FuzzTarget } from "./targets.ts";

export const SLOW_INPUT_MS = 1000;
const MAX_CORPUS = 256;
/** One input in ten keeps its broken checksum, so the checksum checks themselves stay fuzzed. */
const FIX_PROBABILITY = 0.9;
const RSS_SAMPLE_EVERY = 256;

export interface FuzzOptions {
  seed: number;
  /** Stop after this many executions (seeds included)... */
  executions?: number;
  /** ...or after this much wall time, whichever comes first. */
  seconds?: number;
  /** Where crash inputs are written (<dir>/<target>/<hash>.bin + .txt); nothing is written without it. */
  crashDir?: string;
  slowMs?: number;
  /** Called with each input before it runs (the CLI's hang watchdog keeps a copy). */
  onInput?: (input: Uint8Array) => void;
}

export interface Finding {
  /** "hang": the parser did not return at all (found by the CLI's watchdog, main.ts). */
  kind: "crash" | "slow" | "hang";
  /** Exception class and message with numbers elided: one entry per distinct failure. */
  signature: string;
  detail: string;
  iteration: number;
  input: Uint8Array;
  /** Saved reproducer input, when a crash directory was given. */
  file?: string;
}

export interface TargetStats {
  target: string;
  seed: number;
  executions: number;
  seconds: number;
  execPerSec: number;
  /** Inputs the parser accepted / refused with its typed error. */
  accepted: number;
  refused: number;
  crashes: number;
  slow: number;
  slowestMs: number;
  peakRssMb: number;
  corpus: number;
  findings: Finding[];
}

/** Mix the run seed with the target name, so targets do not share one input sequence. */
export function targetSeed(seed: number, name: string): number {
  let h = seed >>> 0;
  for (const c of name) h = Math.imul(h ^ c.charCodeAt(0), 0x01000193) >>> 0;
  return h;
}

export type Outcome = { kind: "accepted" } | { kind: "refused" } | { kind: "crash"; error: unknown };

/** Run one input through the target and classify the result. */
export async function execute(t: FuzzTarget, input: Uint8Array): Promise<Outcome> {
  try {
    const out = t.run(input);
    return (out instanceof Promise ? await out : out) === REFUSED ? { kind: "refused" } : { kind: "accepted" };
  } catch (e) {
    return (t.expected ? t.expected(e) : e instanceof CvmError) ? { kind: "refused" } : { kind: "crash", error: e };
  }
}

export function describeError(e: unknown): { signature: string; detail: string } {
  const err = e instanceof Error ? e : new Error(String(e));
  const frame = (err.stack ?? "").split("\n").find((l) => /\/(platform|agent)\//.test(l)) ?? "";
  const where = frame.replace(/^.*\/((platform|agent)\/[^:)]+).*$/, "$1");
  return {
    signature: `${err.name}: ${err.message.replace(/\d+/g, "N").slice(0, 160)}${where ? ` @ ${where}` : ""}`,
    detail: err.stack ?? `${err.name}: ${err.message}`,
  };
}

export function saveFinding(dir: string, t: FuzzTarget, f: Finding, seed: number): string {
  const targetDir = path.join(dir, t.name);
  fs.mkdirSync(targetDir, { recursive: true });
  const id = createHash("sha256").update(f.input).digest("hex").slice(0, 16);
  const file = path.join(targetDir, `${id}.bin`);
  fs.writeFileSync(file, f.input);
  fs.writeFileSync(
    path.join(targetDir, `${id}.txt`),
    [
      `target: ${t.name} (${t.about})`,
      `kind: ${f.kind}`,
      `found: seed ${seed}, iteration ${f.iteration}`,
      `reproduce: npm run fuzz -- --target ${t.name} --replay ${file}`,
      "",
      f.detail,
      "",
    ].join("\n"),
  );
  return file;
}

/** Fuzz one target until the execution or time budget runs out. */
export async function fuzzTarget(t: FuzzTarget, opts: FuzzOptions): Promise<TargetStats> {
  const r = prng(targetSeed(opts.seed, t.name));
  const mutate = mutatorOf(t);
  const slowMs = opts.slowMs ?? SLOW_INPUT_MS;
  const maxExec = opts.executions ?? Number.POSITIVE_INFINITY;
  const seeds = await t.seeds();
  const corpus = [...seeds];
  const maxCorpusInput = 2 * Math.max(...seeds.map((b) => b.length)) + 1024;
  const seen = new Set<string>();
  const stats: TargetStats = {
    target: t.name,
    seed: opts.seed,
    executions: 0,
    seconds: 0,
    execPerSec: 0,
    accepted: 0,
    refused: 0,
    crashes: 0,
    slow: 0,
    slowestMs: 0,
    peakRssMb: 0,
    corpus: 0,
    findings: [],
  };
  const record = (f: Finding) => {
    if (seen.has(f.signature)) return;
    seen.add(f.signature);
    if (opts.crashDir) f.file = saveFinding(opts.crashDir, t, f, opts.seed);
    stats.findings.push(f);
  };

  const start = performance.now();
  const deadline = opts.seconds !== undefined ? start + opts.seconds * 1000 : Number.POSITIVE_INFINITY;
  for (let i = 0; stats.executions < maxExec; i++) {
    if (i % 32 === 0 && performance.now() >= deadline) break;
    // The seeds themselves first (they must parse), then mutants.
    let input: Uint8Array;
    if (i < seeds.length) input = seeds[i]!;
    else {
      input = mutate(r, r.pick(corpus), r.pick(corpus));
      if (t.fix && r.next() < FIX_PROBABILITY) input = t.fix(input);
    }
    opts.onInput?.(input);
    const t0 = performance.now();
    let outcome = await execute(t, input);
    let ms = performance.now() - t0;
    if (ms > slowMs) {
      // Confirm before reporting: a GC pause or a busy machine can stall one run.
      const t1 = performance.now();
      outcome = await execute(t, input);
      ms = Math.min(ms, performance.now() - t1);
      if (ms > slowMs) {
        stats.slow++;
        record({
          kind: "slow",
          signature: `slower than ${slowMs} ms`,
          detail: `took ${Math.round(ms)} ms (limit ${slowMs} ms)`,
          iteration: i,
          input,
        });
      }
    }
    stats.slowestMs = Math.max(stats.slowestMs, ms);
    stats.executions++;
    if (outcome.kind === "accepted") {
      stats.accepted++;
      // Keep the corpus lean: a grown input (a 70 kB string member, say) slows every later mutation.
      if (i >= seeds.length && input.length <= maxCorpusInput) {
        if (corpus.length < MAX_CORPUS) corpus.push(input);
        else corpus[r.int(seeds.length, MAX_CORPUS - 1)] = input;
      }
    } else if (outcome.kind === "refused") stats.refused++;
    else {
      stats.crashes++;
      record({ kind: "crash", ...describeError(outcome.error), iteration: i, input });
    }
    if (i % RSS_SAMPLE_EVERY === 0) stats.peakRssMb = Math.max(stats.peakRssMb, process.memoryUsage.rss() / 2 ** 20);
  }
  stats.seconds = (performance.now() - start) / 1000;
  stats.execPerSec = stats.executions / Math.max(stats.seconds, 1e-9);
  stats.peakRssMb = Math.max(stats.peakRssMb, process.memoryUsage.rss() / 2 ** 20);
  stats.corpus = corpus.length;
  return stats;
}
