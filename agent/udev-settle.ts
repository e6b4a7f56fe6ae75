// Detection needs the TEE drivers' device nodes (sev-guest, tdx-guest, a modular TPM driver),
// which udev's coldplug loads. The boot unit starts right after the udev trigger, before those
// events are processed, so detection waits until udevd's queue is empty (/run/udev/queue exists
// while events are pending, the file `udevadm settle` checks) whenever it needs more than one
// device that is already there (agent/attest.ts detectPlatform). Bounded: a queue that never
// drains (a hung rule) costs at most UDEV_SETTLE_CAP_MS, then detection runs anyway, and a
// missing driver reads as broken (fail closed). Outside the initramfs the file is absent: no wait.
import * as fs from "node:fs";
import * as path from "node:path";
import type { Deadline } from "../platform/util/deadline.ts";
import type { Logger } from "../platform/util/log.ts";

export const UDEV_SETTLE_CAP_MS = 30_000;
const POLL_MS = 50;

export interface UdevWaitOptions {
  /** Total cap of the wait (trigger marker + queue); then detection runs anyway, logged. */
  capMs?: number;
  /**
   * A file that exists once udev's coldplug was triggered. The boot unit starts before the trigger
   * (to overlap the runtime's start-up with it); until then an absent queue file means "nothing
   * triggered yet", not "settled". The dracut module's drop-in on systemd-udev-trigger.service
   * creates it; undefined: the trigger has run already (any other caller).
   */
  triggerMarker?: string | undefined;
}

/** What udev still has to do before detection (undefined: nothing; outside the initramfs: nothing). */
export function udevPending(root: string, triggerMarker: string | undefined): string | undefined {
  if (triggerMarker !== undefined && !fs.existsSync(triggerMarker)) return "udev's coldplug has not been triggered";
  if (fs.existsSync(path.join(root, "run/udev/queue"))) return "udev still has events queued";
  return undefined;
}

/**
 * Resolves once udev's coldplug was triggered (`triggerMarker`) and `<root>/run/udev/queue` is
 * gone, or after `capMs` (logged), within the deadline.
 */
export async function waitForUdevQueue(
  root: string,
  deadline: Deadline,
  log: Logger,
  { capMs = UDEV_SETTLE_CAP_MS, triggerMarker }: UdevWaitOptions = {},
): Promise<void> {
  const t0 = performance.now();
  const pending = () => udevPending(root, triggerMarker);
  for (let why = pending(); why !== undefined; why = pending()) {
    const waited = performance.now() - t0;
    if (waited >= capMs) {
      log.warning(`${why} after ${Math.round(waited)} ms; detecting the platform anyway`);
      return;
    }
    await deadline.sleep(Math.min(POLL_MS, capMs - waited), "waiting for udev to process the device events");
  }
}
