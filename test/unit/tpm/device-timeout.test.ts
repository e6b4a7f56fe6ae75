// A (v)TPM device that never answers must cost the per-command timeout, not the run: the device
// transport's write(2) blocks inside the kernel on a hung TPM. A FIFO whose buffer is full stands in
// for that device here: our command's write blocks until someone drains it.
import { execFileSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { describe, expect, it } from "vitest";
import { openDevice } from "../../../platform/tpm/transport/device.ts";

describe("/dev/tpmrm0 transport", () => {
  it("gives up on a device that never answers, and refuses further commands", async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "tpmdev-"));
    const fifo = path.join(dir, "tpmrm0");
    execFileSync("mkfifo", [fifo]);
    const filler = fs.openSync(fifo, "r+");
    const PIPE_CAPACITY = 65536;
    fs.writeSync(filler, Buffer.alloc(PIPE_CAPACITY)); // the pipe is now full: the next write blocks
    const tpm = openDevice(fifo);
    try {
      const getRandom = new Uint8Array([0x80, 0x01, 0, 0, 0, 12, 0, 0, 0x01, 0x7b, 0, 8]);
      const t0 = performance.now();
      await expect(tpm.transmit(getRandom, 300)).rejects.toThrow(/did not answer within/);
      expect(performance.now() - t0).toBeLessThan(2_000);
      await expect(tpm.transmit(getRandom, 300)).rejects.toThrow(/did not answer an earlier command/);
    } finally {
      // Unblock the pool thread stuck in write(2), then clean up.
      fs.readSync(filler, Buffer.alloc(PIPE_CAPACITY * 2));
      tpm.close();
      fs.closeSync(filler);
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
