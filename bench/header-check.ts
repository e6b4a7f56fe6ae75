// What the hostile-header defences cost per volume (docs/PERFORMANCE.md "Header checks"): reading
// the header pair only (before issue 10) vs. reading the headers and keyslot areas, the allow-list
// and the private header copy written to and removed from a tmpfs (after). Run as root:
//   BENCH_STATE_DIR=/dev/shm node_modules/.bin/bun bench/header-check.ts [--runs N]
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { luksAllowSchema } from "../agent/config/unlock-schema.ts";
import { verifyHeaderPolicy } from "../agent/unlock/header-policy.ts";
import { writeHeaderCopy } from "../agent/unlock/open-verified.ts";
import { readLuks2Header, readLuks2Volume } from "../platform/luks/volume-io.ts";
import { makeLuksImage } from "../test/unit/unlock/luks-image.ts";

const runs = Number(process.argv[process.argv.indexOf("--runs") + 1] || 50);
const work = fs.mkdtempSync(path.join(os.tmpdir(), "header-bench-"));
const state = fs.mkdtempSync(path.join(process.env.BENCH_STATE_DIR ?? "/run", "header-bench-"));
const img = makeLuksImage(work, "disk.img").file;
const allow = luksAllowSchema.parse({}, "luks_allow");

function measure(name: string, fn: () => void): void {
  for (let i = 0; i < 3; i++) fn();
  const ms: number[] = [];
  for (let i = 0; i < runs; i++) {
    const t = performance.now();
    fn();
    ms.push(performance.now() - t);
  }
  ms.sort((a, b) => a - b);
  const q = (p: number) => ms[Math.min(ms.length - 1, Math.floor(p * ms.length))]!.toFixed(2);
  console.log(`${name.padEnd(48)} p50 ${q(0.5)} ms  p95 ${q(0.95)} ms`);
}

measure("header pair only (before)", () => void readLuks2Header(img));
measure("headers + keyslot areas + allow-list + copy (after)", () => {
  const v = readLuks2Volume(img);
  verifyHeaderPolicy(v.header, allow, img);
  fs.rmSync(writeHeaderCopy(state, v.metadata));
});
const m = readLuks2Volume(img).metadata;
const read = m.extents.reduce((n, e) => n + e.bytes.length, 0);
console.log(`(${runs} runs, metadata area ${m.size} bytes of which ${read} read and copied, bun ${Bun.version})`);
fs.rmSync(work, { recursive: true, force: true });
fs.rmSync(state, { recursive: true, force: true });
