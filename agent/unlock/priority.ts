// The boot unit starts the agent at Nice=19, before udev's coldplug: the runtime's start-up then
// takes only CPU time that udev, the disk and the network do not need (under TCG the start-up is
// seconds of CPU, and competing with the coldplug delays the very devices the agent waits for).
// Once every volume is found and its header checked, the KBS exchange and cryptsetup are the
// boot's critical path, so the agent returns to nice 0 (cryptsetup inherits it).
import * as os from "node:os";
import { errorMessage } from "../../platform/util/errors.ts";
import type { Logger } from "../../platform/util/log.ts";

/** Lower this process's nice value to 0 if it is above; never raises it. */
export function restoreNormalPriority(log: Logger): void {
  try {
    const nice = os.getPriority();
    if (nice <= 0) return;
    os.setPriority(0);
    log.debug(`volumes ready: priority nice ${nice} -> 0`);
  } catch (e) {
    log.warning(`could not return to normal priority: ${errorMessage(e)}`);
  }
}
