// Runs one target in a worker (worker.ts) and watches it: a parser that does not return within
// `hangSeconds` is a finding of its own ("hang"). Its input is saved like a crash and the worker is
// terminated, so one infinite loop costs one target's run, not the whole fuzz run. Needs bun (the
// worker loads TypeScript directly).
import { Worker } from "node:worker_threads";
import { saveFinding, type Finding, type FuzzOptions, type TargetStats } from "./engine.ts";
import { MAX_INPUT_BYTES } from "./mutate.ts";
import type { FuzzTarget } from "./targets.ts";
import type { WorkerData } from "./worker.ts";

/** Seeds and JSON re-serialisation may exceed the mutation cap; the watchdog keeps this much. */
const WATCHED_INPUT_BYTES = 4 * MAX_INPUT_BYTES;

export function fuzzInWorker(
  t: FuzzTarget,
  opts: FuzzOptions,
  hangSeconds: number,
  targetsModule: string,
): Promise<TargetStats> {
  const shared = new SharedArrayBuffer(8 + WATCHED_INPUT_BYTES);
  const header = new Int32Array(shared, 0, 2);
  const data: WorkerData = { targetsModule, target: t.name, options: opts, shared };
  const worker = new Worker(new URL("./worker.ts", import.meta.url), { workerData: data });
  const started = performance.now();
  return new Promise((resolve, reject) => {
    let last = 0;
    let still = 0;
    const timer = setInterval(() => {
      const n = Atomics.load(header, 0);
      // Until the first input runs the worker is loading modules and seeds (our code, not a parser):
      // on a loaded machine that can take seconds, and it must not count as a hang.
      if (n === 0) return;
      if (n !== last) {
        last = n;
        still = 0;
        return;
      }
      if (++still < hangSeconds) return;
      clearInterval(timer);
      const input = new Uint8Array(shared, 8, Atomics.load(header, 1)).slice();
      void worker.terminate();
      const finding: Finding = {
        kind: "hang",
        signature: `no return within ${hangSeconds} s`,
        detail: `execution ${n} did not return within ${hangSeconds} s; the worker was terminated`,
        iteration: n - 1,
        input,
      };
      if (opts.crashDir) finding.file = saveFinding(opts.crashDir, t, finding, opts.seed);
      resolve(hungStats(t.name, opts.seed, n, (performance.now() - started) / 1000, finding));
    }, 1000);
    worker.once("message", (stats: TargetStats) => {
      clearInterval(timer);
      void worker.terminate();
      resolve(stats);
    });
    worker.once("error", (e) => {
      clearInterval(timer);
      reject(e);
    });
  });
}

function hungStats(target: string, seed: number, executions: number, seconds: number, f: Finding): TargetStats {
  return {
    target,
    seed,
    executions,
    seconds,
    execPerSec: executions / seconds,
    accepted: 0,
    refused: 0,
    crashes: 0,
    slow: 1,
    slowestMs: Number.POSITIVE_INFINITY,
    peakRssMb: process.memoryUsage.rss() / 2 ** 20,
    corpus: 0,
    findings: [f],
  };
}
