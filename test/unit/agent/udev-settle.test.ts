// Detection waits for udev's coldplug queue (agent/udev-settle.ts), bounded by a cap and the deadline.
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { waitForUdevQueue } from "../../../agent/udev-settle.ts";
import { Deadline } from "../../../platform/util/deadline.ts";
import type { Logger } from "../../../platform/util/log.ts";
import { silentLogger } from "../../../platform/util/log.ts";

let root: string;
let deadline: Deadline;
const queue = () => path.join(root, "run/udev/queue");
beforeEach(() => {
  root = fs.mkdtempSync(path.join(os.tmpdir(), "udev-"));
  fs.mkdirSync(path.join(root, "run/udev"), { recursive: true });
  deadline = new Deadline(10_000);
});
afterEach(() => {
  deadline.dispose();
  fs.rmSync(root, { recursive: true, force: true });
});

describe("waitForUdevQueue", () => {
  it("no queue file (udev idle, or not the initramfs): returns at once", async () => {
    const t0 = Date.now();
    await waitForUdevQueue(root, deadline, silentLogger);
    expect(Date.now() - t0).toBeLessThan(50);
  });

  it("waits until udev has processed the queued events", async () => {
    fs.writeFileSync(queue(), "");
    setTimeout(() => fs.rmSync(queue()), 150);
    const t0 = Date.now();
    await waitForUdevQueue(root, deadline, silentLogger);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(140);
    expect(fs.existsSync(queue())).toBe(false);
  });

  it("a queue that never drains costs at most the cap, with a warning, then detection runs", async () => {
    fs.writeFileSync(queue(), "");
    const warnings: string[] = [];
    const log = { ...silentLogger, warning: (m: string) => void warnings.push(m) } as Logger;
    const t0 = Date.now();
    await waitForUdevQueue(root, deadline, log, { capMs: 200 });
    expect(Date.now() - t0).toBeGreaterThanOrEqual(190);
    expect(Date.now() - t0).toBeLessThan(2000);
    expect(warnings.join("\n")).toMatch(/udev still has events queued after \d+ ms; detecting the platform anyway/);
  });

  it("started before the coldplug trigger: an absent queue is not 'settled' until the trigger's marker exists", async () => {
    const marker = path.join(root, "run/cvm-unlock.udev-triggered");
    setTimeout(() => fs.writeFileSync(queue(), ""), 100); // the trigger queues events ...
    setTimeout(() => fs.writeFileSync(marker, ""), 150); // ... its unit finishes ...
    setTimeout(() => fs.rmSync(queue()), 300); // ... udev processes them
    const t0 = Date.now();
    await waitForUdevQueue(root, deadline, silentLogger, { triggerMarker: marker });
    expect(Date.now() - t0).toBeGreaterThanOrEqual(290);
    expect(fs.existsSync(queue())).toBe(false);
  });

  it("a trigger marker that never appears costs at most the cap, with a warning naming it", async () => {
    const warnings: string[] = [];
    const log = { ...silentLogger, warning: (m: string) => void warnings.push(m) } as Logger;
    await waitForUdevQueue(root, deadline, log, { capMs: 200, triggerMarker: path.join(root, "never") });
    expect(warnings.join("\n")).toMatch(/coldplug has not been triggered after \d+ ms; detecting the platform anyway/);
  });

  it("the run's deadline ends the wait with a deadline error", async () => {
    fs.writeFileSync(queue(), "");
    const short = new Deadline(100);
    await expect(waitForUdevQueue(root, short, silentLogger)).rejects.toThrow(
      /deadline of 0\.1s exceeded while waiting for udev to process the device events/,
    );
    short.dispose();
  });
});
