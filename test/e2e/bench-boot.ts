// Boot-time cost of attestation, measured inside the guest (kernel-log timestamps):
// alternating boots of the "floor" image (key baked in, no module of ours) and the product image
// (cvm-unlock unlock against the test KBS), same kernel, disk, swtpm state and QEMU settings.
//   node_modules/.bin/bun test/e2e/bench-boot.ts [ROUNDS] [--also NAME=INITRD ...]   (after test/e2e/setup.sh)
// --also adds images to every round (e.g. an older build: before/after side by side on one loaded
// host); a NAME starting with "floor" is timed by the floor's unit, any other by the agent's.
// Prints tables of medians (boot milestones, where the agent's time goes, its --timings phases)
// and writes .cache/e2e/bench/bench-boot.json with a summary. docs/PERFORMANCE.md "## Boot".
import * as fs from "node:fs";
import * as path from "node:path";
import { startTestKbs } from "../kbs/server.ts";
import { tpmVerifierTrusting } from "../kbs/verifiers/tpm.ts";
import { agentPhases, bootTimeline, kmsgLines, rootMarker, type BootTimeline } from "./harness/console.ts";
import { readManifest, REPO } from "./harness/manifest.ts";
import { Vm } from "./harness/vm.ts";

const CMDLINE =
  "console=ttyS0 panic=-1 tsc=reliable loglevel=4 log_buf_len=4M printk.time=1 printk.devkmsg=on systemd.journald.forward_to_kmsg=1 systemd.journald.max_level_kmsg=info";
const args = process.argv.slice(2);
const rounds = Number(args.find((a) => /^\d+$/.test(a)) ?? 3);
const also = args.flatMap((a, i) => (args[i - 1] === "--also" ? [a] : []));
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
  marks: Record<string, number>;
  phases: Record<string, number>;
}

const FLOOR_UNIT = "cvm-unlock-e2e-floor.service";
const AGENT_UNIT = "cvm-unlock.service";
const images: [string, string, string][] = [
  ["floor", m.initrdFloor, FLOOR_UNIT],
  ["agent", m.initrdAgent, AGENT_UNIT],
  ...also.map((a): [string, string, string] => {
    const [name, file] = a.split("=", 2) as [string, string | undefined];
    if (!file || !fs.existsSync(file)) throw new Error(`--also ${a}: expected NAME=INITRD of an existing file`);
    return [name, file, name.startsWith("floor") ? FLOOR_UNIT : AGENT_UNIT];
  }),
];

/** Guest uptime (s) of the milestones that show what waits for what (first match of each). */
const MARKS: [string, RegExp][] = [
  ["udev trigger done", /Finished systemd-udev-trigger\.service/],
  ["unit started", /Starting (cvm-unlock|cvm-unlock-e2e-floor)\.service/],
  ["agent running (first log line)", /cvm-unlock\[\d+\]: /],
  ["volume found + header checked", /cvm-unlock\[\d+\]: volume \S+: \S+ is LUKS2/],
  ["network online (target)", /Reached target network-online\.target/],
  ["route to the KBS", /cvm-unlock\[\d+\]: kbs: (network route after|requesting challenge)/],
  ["KBS challenge requested", /cvm-unlock\[\d+\]: kbs: requesting challenge/],
  ["key released", /cvm-unlock\[\d+\]: kbs: resource released/],
  ["root unlocked (unit finished)", /Finished (cvm-unlock|cvm-unlock-e2e-floor)\.service/],
];

function marks(text: string): Record<string, number> {
  const lines = kmsgLines(text);
  const init = lines.find((l) => /Run \/init as init process/.test(l.text))?.t ?? NaN;
  const out: Record<string, number> = {};
  for (const [name, re] of MARKS) {
    const hit = lines.find((l) => re.test(l.text));
    if (hit) out[name] = hit.t - init;
  }
  return out;
}

const samples: Sample[] = [];
try {
  for (let i = 0; i < rounds; i++) {
    for (const [image, initrd, unit] of images) {
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
      samples.push({
        image,
        wallMs: r.wallMs,
        t: bootTimeline(text, unit),
        marks: marks(text),
        phases: agentPhases(text),
      });
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
  // before the agent's timeline starts: exec of the 116 MB binary, the bun runtime, module loading
  [
    "  of which runtime start-up (unit time - agent total)",
    (s) => span(s, "unlockStart", "unlockDone") - (s.phases.total ?? NaN) / 1000,
  ],
  ["initramfs /init -> root unlocked", (s) => span(s, "initramfsStart", "unlockDone")],
  ["initramfs /init -> switch-root", (s) => span(s, "initramfsStart", "switchRoot")],
  ["kernel start -> real root's init", (s) => s.t.rootInit ?? NaN],
  ["QEMU wall (start -> poweroff)", (s) => s.wallMs / 1000],
];
const by = (image: string) => samples.filter((s) => s.image === image);
const fmt = (x: number) => (Number.isFinite(x) ? x.toFixed(1).padStart(6) : "     -");
const names = images.map(([n]) => n);
const cols = (f: (s: Sample) => number) => names.map((n) => median(by(n).map(f)));
let table = `| guest uptime, median of ${rounds} (s) | ${names.join(" | ")} | agent - floor |\n|---|${names.map(() => "---:|").join("")}---:|\n`;
for (const [name, f] of rows) {
  const v = cols(f);
  table += `| ${name} | ${v.map(fmt).join(" | ")} | ${fmt(v[1]! - v[0]!)} |\n`;
}
table += `\n| milestone, s after initramfs /init (median) | ${names.join(" | ")} |\n|---|${names.map(() => "---:|").join("")}\n`;
const breakdown: Record<string, Record<string, number>> = {};
for (const [mark] of MARKS) {
  const v = cols((s) => s.marks[mark] ?? NaN);
  names.forEach((n, i) => ((breakdown[n] ??= {})[mark] = v[i]!));
  table += `| ${mark} | ${v.map(fmt).join(" | ")} |\n`;
}
const agentImages = names.filter((n) => !n.startsWith("floor"));
const phaseNames = [...new Set(agentImages.flatMap((n) => by(n).flatMap((s) => Object.keys(s.phases))))];
table += `\n| agent phase (--timings), median (ms) | ${agentImages.join(" | ")} |\n|---|${agentImages.map(() => "---:|").join("")}\n`;
for (const p of phaseNames)
  table += `| ${p} | ${agentImages.map((n) => median(by(n).map((s) => s.phases[p] ?? NaN)).toFixed(1)).join(" | ")} |\n`;
process.stdout.write(table);
const unlocked = (n: string) => median(by(n).map((s) => span(s, "initramfsStart", "unlockDone")));
const summary = {
  floor_root_unlocked_s: unlocked("floor"),
  agent_root_unlocked_s: unlocked("agent"),
  extra_s: unlocked("agent") - unlocked("floor"),
  ...Object.fromEntries(names.slice(2).map((n) => [`${n.replace(/\W/g, "_")}_root_unlocked_s`, unlocked(n)])),
};
fs.mkdirSync(out, { recursive: true });
fs.writeFileSync(
  path.join(out, "bench-boot.json"),
  JSON.stringify({ summary, rounds, images: names, cmdline: CMDLINE, breakdown, samples }, null, 2) + "\n",
);
fs.writeFileSync(path.join(out, "bench-boot.md"), table);
