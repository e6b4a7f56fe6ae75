// Boot-time cost of attestation, measured inside the guest (kernel-log timestamps):
// alternating boots of the "floor" image (key baked in, no attestation) and the product image
// (cvm-unlock unlock against the test KBS), same kernel, disk, swtpm state and QEMU settings.
//   node_modules/.bin/bun test/e2e/bench-boot.ts [ROUNDS]     (after test/e2e/setup.sh)
// Prints a table of medians and writes .cache/e2e/bench-boot.json. docs/PERFORMANCE.md "## Boot".
import * as fs from "node:fs";
import * as path from "node:path";
import { startTestKbs } from "../kbs/server.ts";
import { tpmVerifierTrusting } from "../kbs/verifiers/tpm.ts";
import { agentPhases, bootTimeline, rootMarker, type BootTimeline } from "./harness/console.ts";
import { readManifest, REPO } from "./harness/manifest.ts";
import { Vm } from "./harness/vm.ts";

const CMDLINE =
  "console=ttyS0 panic=-1 tsc=reliable loglevel=4 log_buf_len=4M printk.time=1 printk.devkmsg=on systemd.journald.forward_to_kmsg=1 systemd.journald.max_level_kmsg=info";
const rounds = Number(process.argv[2] ?? 3);
const out = path.join(REPO, ".cache", "e2e", "bench");
const m = readManifest();
const key = new Uint8Array(fs.readFileSync(m.diskKeyFile));
const tls = (f: string) => fs.readFileSync(path.join(m.tlsDir, f), "utf8");
const kbs = await startTestKbs({
  host: "127.0.0.1",
  port: m.kbsPort,
  tls: { keyPem: tls("server.key"), certPem: tls("server.pem"), caPem: tls("ca.pem") },
  resources: { "default/key/root": key },
  allowTees: ["tpm"],
  verifiers: { tpm: tpmVerifierTrusting([fs.readFileSync(m.akPem, "utf8")]) },
});

interface Sample {
  image: string;
  wallMs: number;
  t: BootTimeline;
  phases: Record<string, number>;
}
const samples: Sample[] = [];
try {
  for (let i = 0; i < rounds; i++) {
    for (const [image, initrd, unit] of [
      ["floor", m.initrdFloor, "cvm-unlock-e2e-floor.service"],
      ["agent", m.initrdAgent, "cvm-unlock.service"],
    ] as const) {
      const vm = new Vm({
        kernel: m.kernel,
        initrd,
        disk: m.disk,
        cmdline: CMDLINE,
        swtpmTemplate: m.swtpmTemplate,
        workDir: path.join(out, `${image}-${i}`),
        timeoutMs: 300_000,
      });
      await vm.start();
      const r = await vm.exited();
      await vm.stop();
      const text = vm.text();
      if (!rootMarker(text)) throw new Error(`${image} round ${i}: no switch-root marker (see ${vm.consoleLog})`);
      samples.push({ image, wallMs: r.wallMs, t: bootTimeline(text, unit), phases: agentPhases(text) });
      process.stderr.write(`${image} round ${i}: wall ${(r.wallMs / 1000).toFixed(1)} s\n`);
    }
  }
} finally {
  await kbs.close();
}

const median = (xs: number[]) => {
  const s = xs.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  return s.length ? s[Math.floor((s.length - 1) / 2)]! : NaN;
};
const span = (s: Sample, from: keyof BootTimeline, to: keyof BootTimeline) => (s.t[to] ?? NaN) - (s.t[from] ?? NaN);
const rows: [string, (s: Sample) => number][] = [
  ["kernel start -> initramfs /init", (s) => s.t.initramfsStart ?? NaN],
  ["initramfs /init -> network online", (s) => span(s, "initramfsStart", "networkOnline")],
  ["unlock unit start -> done", (s) => span(s, "unlockStart", "unlockDone")],
  ["initramfs /init -> root unlocked", (s) => span(s, "initramfsStart", "unlockDone")],
  ["initramfs /init -> switch-root", (s) => span(s, "initramfsStart", "switchRoot")],
  ["kernel start -> real root's init", (s) => s.t.rootInit ?? NaN],
  ["QEMU wall (start -> poweroff)", (s) => s.wallMs / 1000],
];
const by = (image: string) => samples.filter((s) => s.image === image);
const fmt = (x: number) => (Number.isFinite(x) ? x.toFixed(1).padStart(6) : "     -");
let table = `| guest uptime, median of ${rounds} (s) | floor (baked key) | cvm-unlock | difference |\n|---|---:|---:|---:|\n`;
for (const [name, f] of rows) {
  const a = median(by("floor").map(f));
  const b = median(by("agent").map(f));
  table += `| ${name} | ${fmt(a)} | ${fmt(b)} | ${fmt(b - a)} |\n`;
}
const phaseNames = [...new Set(by("agent").flatMap((s) => Object.keys(s.phases)))];
table += `\n| agent phase (--timings), median (ms) | |\n|---|---:|\n`;
for (const p of phaseNames) table += `| ${p} | ${median(by("agent").map((s) => s.phases[p] ?? NaN)).toFixed(1)} |\n`;
process.stdout.write(table);
fs.mkdirSync(out, { recursive: true });
fs.writeFileSync(
  path.join(out, "bench-boot.json"),
  JSON.stringify({ rounds, cmdline: CMDLINE, samples }, null, 2) + "\n",
);
fs.writeFileSync(path.join(out, "bench-boot.md"), table);
