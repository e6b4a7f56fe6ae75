// The boot unit starts the agent at Nice=19, before udev's coldplug: the runtime's start-up then
// takes only CPU time that udev, the disk and the network do not need (under TCG the start-up is
// seconds of CPU, and competing with the coldplug delays the very devices the agent waits for).
// Once every volume is found and its header checked, the KBS exchange and cryptsetup are the
// boot's critical path, so the agent returns to nice 0 (cryptsetup inherits it).
// Linux keeps a nice value per thread, and setpriority(pid 0) changes only the calling one: the
// runtime's threads started at Nice=19 (the JIT compiler, the allocator's, the worker pool's)
// would stay there, so every thread of the process is lowered.
import * as fs from "node:fs";
import * as os from "node:os";
import { errorMessage } from "../../platform/util/errors.ts";
import type { Logger } from "../../platform/util/log.ts";

/** A thread started while the others were being lowered inherits 19: look again, a few times at most. */
const MAX_PASSES = 3;

/** Lower one thread to nice 0 if it is above; false if it was not (or is gone). */
function lowerThread(tid: number): boolean {
  let nice: number;
  try {
    nice = os.getPriority(tid);
  } catch {
    return false; // exited meanwhile
  }
  if (nice <= 0) return false;
  os.setPriority(tid, 0);
  return true;
}

/** The process's thread ids; just this one where /proc is not mounted. */
function threadIds(): number[] {
  try {
    return fs.readdirSync("/proc/self/task").map(Number);
  } catch {
    return [process.pid];
  }
}

/** Lower every thread of this process to nice 0 if it is above; never raises one. */
export function restoreNormalPriority(log: Logger): void {
  try {
    const nice = os.getPriority();
    if (nice <= 0) return;
    for (let pass = 0; pass < MAX_PASSES; pass++) {
      // a plain loop, not some(): every thread of the pass is lowered
      let lowered = false;
      for (const tid of threadIds()) if (lowerThread(tid)) lowered = true;
      if (!lowered) break;
    }
    log.debug(`volumes ready: priority nice ${nice} -> 0`);
  } catch (e) {
    log.warning(`could not return to normal priority: ${errorMessage(e)}`);
  }
}
