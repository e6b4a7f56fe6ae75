// The real bun:ffi ioctl, exercised under bun (vitest runs on node, so spawn bun on a tiny script):
// FIONREAD on a FIFO proves the argument buffer's address reaches the kernel and the result comes
// back; SNP_GET_REPORT on /dev/null proves errno is read (ENOTTY) and the u64 request passes intact.
import { execFileSync, spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { describe, expect, it } from "vitest";

const BUN = path.resolve(__dirname, "../../../node_modules/.bin/bun");

describe("bun:ffi ioctl (platform/snp/ffi-bun.ts)", () => {
  it("is never loaded under node", async () => {
    const { loadNativeIoctl } = await import("../../../platform/snp/native-ioctl.ts");
    expect(await loadNativeIoctl()).toBeUndefined();
  });

  it("passes buffers and reads errno under bun", () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "ffi-"));
    try {
      const fifo = path.join(dir, "fifo");
      execFileSync("mkfifo", [fifo]);
      const script = path.join(dir, "probe.ts");
      fs.writeFileSync(
        script,
        `import * as fs from "node:fs";
import { SNP_GET_REPORT } from ${JSON.stringify(path.resolve(__dirname, "../../../platform/snp/ioctl.ts"))};
import { loadNativeIoctl } from ${JSON.stringify(path.resolve(__dirname, "../../../platform/snp/native-ioctl.ts"))};
const dev = (await loadNativeIoctl())!;
const fd = fs.openSync(${JSON.stringify(fifo)}, "r+");
fs.writeSync(fd, Buffer.from("hello world!"));
const n = new Uint8Array(new ArrayBuffer(4));
const a = dev.ioctl(fd, 0x541bn, n);
const nul = fs.openSync("/dev/null", "r+");
const b = dev.ioctl(nul, SNP_GET_REPORT, new Uint8Array(new ArrayBuffer(0x20)));
console.log(JSON.stringify({ a, avail: new DataView(n.buffer).getInt32(0, true), b, addr: dev.addressOf(n) > 0n }));
`,
      );
      const r = spawnSync(BUN, [script], { encoding: "utf8", timeout: 30_000 });
      expect(r.stderr).toBe("");
      expect(JSON.parse(r.stdout)).toEqual({ a: { rc: 0, errno: 0 }, avail: 12, b: { rc: -1, errno: 25 }, addr: true });
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
