// What the benchmarks share: child processes that die with the bench, and the local test KBS in
// its own process (HTTPS, private CA) serving one random secret, with an swtpm whose AK is
// persisted at trustee's default handle 0x81010002 for tee tpm.
import { spawn, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import * as fs from "node:fs";
import * as net from "node:net";
import * as path from "node:path";
import { startSwtpm, type Swtpm } from "../test/helpers/swtpm.ts";

export const ROOT = path.resolve(path.dirname(new URL(import.meta.url).pathname), "..");
export const BINARY = path.join(ROOT, "dist", "cvm-unlock");
const bun = path.join(ROOT, "node_modules", ".bin", "bun");

export function arg(name: string, def: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 && process.argv[i + 1] ? process.argv[i + 1]! : def;
}

const children: ChildProcess[] = [];
process.on("exit", () => children.forEach((c) => c.kill("SIGTERM")));

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.listen(0, "127.0.0.1", () => {
      const port = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(port));
    });
    s.on("error", reject);
  });
}

export async function waitFor(cond: () => boolean, what: string, ms = 20_000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

export async function waitPort(port: number, what: string): Promise<void> {
  const end = Date.now() + 20_000;
  for (;;) {
    const ok = await new Promise<boolean>((resolve) => {
      const s = net.connect(port, "127.0.0.1", () => (s.destroy(), resolve(true)));
      s.on("error", () => resolve(false));
    });
    if (ok) return;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what} on port ${port}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** Start a long-running helper that is killed when the bench exits; its stderr is shown if it fails. */
export function startChild(cmd: string, args: string[], opts: { cwd?: string } = {}): ChildProcess {
  const c = spawn(cmd, args, { stdio: ["ignore", "ignore", "pipe"], ...opts });
  let err = "";
  c.stderr?.on("data", (d) => (err = (err + d).slice(-4000)));
  c.on("exit", (code) => {
    if (code && code !== 143) process.stderr.write(`${cmd} exited ${code}: ${err}\n`);
  });
  children.push(c);
  return c;
}

export interface BenchKbs {
  secret: Buffer;
  /** `fetch` arguments reaching this KBS with this tee: --tee, --tpm or --allow-sample, --kbs, --ca. */
  cliArgs: string[];
  tpm: Swtpm | undefined;
}

export async function startBenchKbs(work: string, tee: string): Promise<BenchKbs> {
  const secret = randomBytes(32);
  fs.writeFileSync(path.join(work, "secret"), secret, { mode: 0o600 });
  const kbsPort = await freePort();
  const tlsDir = path.join(work, "tls");
  const ready = path.join(work, "kbs.ready");
  const cliArgs = ["--tee", tee];
  let tpm: Swtpm | undefined;
  if (tee === "tpm") {
    tpm = await startSwtpm({ ekCerts: false });
    await tpm.persistAk(0x81010002);
    cliArgs.push("--tpm", tpm.spec);
  } else cliArgs.push("--allow-sample");
  startChild(bun, [
    path.join(ROOT, "test/kbs/main.ts"),
    ...["--port", String(kbsPort), "--host", "127.0.0.1", "--tls-dir", tlsDir],
    ...["--resource", `default/key/root=@${path.join(work, "secret")}`, "--policy", "allow", "--allow-tee", tee],
    ...["--ready-file", ready],
  ]);
  await waitFor(() => fs.existsSync(ready), "test KBS");
  cliArgs.push("--kbs", `https://127.0.0.1:${kbsPort}`, "--ca", path.join(tlsDir, "ca.pem"));
  return { secret, cliArgs, tpm };
}

function pct(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))]!;
}
export const stats = (xs: number[]) => ({
  p50: +pct(xs, 50).toFixed(1),
  p95: +pct(xs, 95).toFixed(1),
  n: xs.length,
});
