// One target's fuzz loop in a worker thread, so that the CLI (watchdog.ts) can stop a parser that
// never returns. Before each execution the input is copied into shared memory with a counter: when
// the counter stops moving, the watchdog has the input that hung.
import { parentPort, workerData } from "node:worker_threads";
import { fuzzTarget, type FuzzOptions } from "./engine.ts";
import type { FuzzTarget } from "./targets.ts";

export interface WorkerData {
  /** Module exporting TARGETS (test/fuzz/targets.ts, or a test's planted targets). */
  targetsModule: string;
  target: string;
  options: FuzzOptions;
  /** Int32 [executions started, input length], then the input bytes. */
  shared: SharedArrayBuffer;
}

const data = workerData as WorkerData;
const { TARGETS } = (await import(data.targetsModule)) as { TARGETS: FuzzTarget[] };
const target = TARGETS.find((t) => t.name === data.target)!;
const header = new Int32Array(data.shared, 0, 2);
const body = new Uint8Array(data.shared, 8);

const stats = await fuzzTarget(target, {
  ...data.options,
  onInput: (input) => {
    const n = Math.min(input.length, body.length);
    body.set(input.subarray(0, n));
    Atomics.store(header, 1, n);
    Atomics.add(header, 0, 1);
  },
});
parentPort!.postMessage(stats);
