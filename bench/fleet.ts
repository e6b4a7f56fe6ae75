// Fleet benchmark (docs/PERFORMANCE.md "Fleet behind a TCP load balancer"): N concurrent agents
// (dist/cvm-unlock fetch, sample evidence) against R test-KBS replicas with separate session stores
// and token keys, behind HAProxy in TCP mode with round-robin, with injected 503s, 429s with
// Retry-After and dropped connections at every phase. Writes the figure into docs/PERFORMANCE.md.
//   npm run bench:fleet -- [--agents 8,32] [--replicas 2] [--no-write]
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { ensureBinary, REPO_ROOT } from "../test/helpers/binary.ts";
import { runFleet, summarize } from "../test/helpers/fleet.ts";

function arg(name: string, def: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 && process.argv[i + 1] ? process.argv[i + 1]! : def;
}
const fleetSizes = arg("agents", "8,32").split(",").map(Number);
const replicas = Number(arg("replicas", "2"));
const write = !process.argv.includes("--no-write");

ensureBinary();
const faultsFor = (agents: number) => {
  const per = Math.max(1, Math.ceil(agents / (4 * replicas)));
  return () => ({
    unavailable: {
      auth: { count: per, retryAfter: "1", status: 429 },
      attest: { count: per },
      resource: { count: per },
    },
    drop: { auth: per, attest: per, resource: per },
  });
};
// Each fleet without faults first: what the machine itself costs (start-up of N binaries at once).
const scenarios = fleetSizes.flatMap((agents) => [
  { name: `${agents} without faults`, agents, faults: () => ({}) },
  { name: `${agents} with faults`, agents, faults: faultsFor(agents) },
]);
const rows: string[] = [];
const failures: unknown[] = [];
let wall = "";
for (const sc of scenarios) {
  const { agents } = sc;
  const r = await runFleet({ agents, replicas, faults: sc.faults, deadlineS: 120 });
  const s = summarize(r);
  const fired =
    Object.entries(r.faultsFired)
      .map(([k, v]) => `${v}× ${k === "drop" ? "dropped connection" : `HTTP ${k}`}`)
      .join(", ") || "none";
  rows.push(
    `| ${agents} | ${replicas} | ${fired} | ${r.succeeded}/${agents} | ${Math.round(s.p50)} ms | ${Math.round(s.p95)} ms | ${s.requestsPerUnlock.toFixed(2)} | ${r.sessionsLost} |`,
  );
  wall += `${wall ? ", " : ""}${sc.name} ${(r.wallMs / 1000).toFixed(1)} s`;
  failures.push(...r.failures);
}
const section = [
  "<!-- fleet:begin (written by bench/fleet.ts) -->",
  `Measured ${new Date().toISOString().slice(0, 10)} on ${os.cpus().length} shared cores (load average ${os
    .loadavg()[0]!
    .toFixed(1)} at the end), all agents of a fleet started at once; wall time ${wall}:`,
  "",
  "| agents | replicas | faults injected (fired) | success | p50 | p95 | KBS requests per unlock | sessions lost |",
  "|---|---|---|---|---|---|---|---|",
  ...rows,
  "<!-- fleet:end -->",
].join("\n");
console.log(section);
if (failures.length) console.error(JSON.stringify(failures, null, 2));
if (write) {
  const file = path.join(REPO_ROOT, "docs", "PERFORMANCE.md");
  const md = fs.readFileSync(file, "utf8");
  const re = /<!-- fleet:begin[\s\S]*?<!-- fleet:end -->/;
  if (!re.test(md)) throw new Error("docs/PERFORMANCE.md has no fleet:begin/fleet:end markers");
  fs.writeFileSync(file, md.replace(re, section));
  console.log(`written to ${path.relative(process.cwd(), file)}`);
}
process.exit(failures.length === 0 ? 0 : 1);
