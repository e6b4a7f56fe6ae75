// The product under test is dist/cvm-unlock. ensureBinary() builds it (npm run build) only when it is
// missing or older than a source file; runCli() spawns it asynchronously (so an in-process test KBS
// keeps serving) with a clean environment and collects stdout as bytes.
import { execFileSync, spawn, type ChildProcess } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";

export const REPO_ROOT = path.resolve(path.dirname(new URL(import.meta.url).pathname), "..", "..");
export const BINARY = path.join(REPO_ROOT, "dist", "cvm-unlock");
const SOURCES = ["agent", "platform", "build.ts", "package.json", "package-lock.json"];
const LOCK = path.join(REPO_ROOT, "dist", ".ensure-binary.lock");

function newestSourceMtime(): number {
  let newest = 0;
  const walk = (p: string) => {
    let st: fs.Stats;
    try {
      st = fs.statSync(p);
    } catch {
      return;
    }
    if (st.isDirectory()) for (const e of fs.readdirSync(p)) walk(path.join(p, e));
    else if (/\.(ts|json)$/.test(p)) newest = Math.max(newest, st.mtimeMs);
  };
  for (const s of SOURCES) walk(path.join(REPO_ROOT, s));
  return newest;
}

function isFresh(): boolean {
  try {
    return fs.statSync(BINARY).mtimeMs >= newestSourceMtime();
  } catch {
    return false;
  }
}

function sleepSync(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

/** Path of an up-to-date dist/cvm-unlock; builds it at most once across concurrent test processes. */
export function ensureBinary(): string {
  if (isFresh()) return BINARY;
  fs.mkdirSync(path.dirname(LOCK), { recursive: true });
  const deadline = Date.now() + 300_000;
  for (;;) {
    let fd: number | undefined;
    try {
      fd = fs.openSync(LOCK, "wx");
    } catch {
      // Someone else is building; a lock older than 5 minutes is stale.
      try {
        if (Date.now() - fs.statSync(LOCK).mtimeMs > 300_000) fs.rmSync(LOCK, { force: true });
      } catch {}
      if (Date.now() > deadline) throw new Error(`ensureBinary: timed out waiting for ${LOCK}`);
      sleepSync(250);
      if (isFresh()) return BINARY;
      continue;
    }
    try {
      if (!isFresh())
        execFileSync("npm", ["run", "--silent", "build"], { cwd: REPO_ROOT, stdio: ["ignore", "inherit", "inherit"] });
    } finally {
      fs.closeSync(fd);
      fs.rmSync(LOCK, { force: true });
    }
    if (!fs.existsSync(BINARY)) throw new Error("ensureBinary: npm run build produced no dist/cvm-unlock");
    return BINARY;
  }
}

export interface RunOptions {
  /** Added to a minimal environment (PATH, LANG=C); the test's own environment is not inherited. */
  env?: Record<string, string>;
  cwd?: string;
  /** Written to the child's stdin, then closed. */
  input?: string | Uint8Array;
  /** Kill (SIGKILL) after this long; default 60 s. */
  timeoutMs?: number;
  /** Extra pipes at fd 3, 4, ... (for --out-fd); their bytes come back in `fds`. */
  extraFds?: number;
  /** Binary to run (default dist/cvm-unlock). */
  binary?: string;
  /** Sees the child right after spawn (tests that send it signals). */
  onSpawn?: (child: ChildProcess) => void;
}

export interface RunResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: Buffer;
  stderr: string;
  fds: Buffer[];
  durationMs: number;
  timedOut: boolean;
}

export function runCli(args: string[], opts: RunOptions = {}): Promise<RunResult> {
  const extra = opts.extraFds ?? 0;
  const child = spawn(opts.binary ?? BINARY, args, {
    cwd: opts.cwd ?? REPO_ROOT,
    env: { PATH: process.env.PATH ?? "/usr/sbin:/usr/bin:/sbin:/bin", LANG: "C", ...opts.env },
    stdio: ["pipe", "pipe", "pipe", ...Array.from({ length: extra }, () => "pipe" as const)],
  });
  opts.onSpawn?.(child);
  const start = performance.now();
  // Under bun, extra pipes can deliver their data after the child's 'close': wait for each stream's end.
  const ended: Promise<void>[] = [];
  const collect = (s: NodeJS.ReadableStream | null | undefined) => {
    const chunks: Buffer[] = [];
    if (s) {
      s.on("data", (c: Buffer) => chunks.push(c));
      ended.push(
        new Promise((res) => (s.once("end", () => res()), s.once("close", () => res()), s.once("error", () => res()))),
      );
    }
    return chunks;
  };
  const out = collect(child.stdout);
  const err = collect(child.stderr);
  const fds = Array.from({ length: extra }, (_, i) => collect(child.stdio[3 + i] as NodeJS.ReadableStream));
  child.stdin!.on("error", () => {}); // the child may exit without reading stdin
  child.stdin!.end(opts.input ?? "");
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    child.kill("SIGKILL");
  }, opts.timeoutMs ?? 60_000);
  return new Promise((resolve, reject) => {
    child.on("error", (e) => {
      clearTimeout(timer);
      reject(e);
    });
    child.on("close", async (code, signal) => {
      clearTimeout(timer);
      await Promise.race([Promise.all(ended), new Promise((r) => setTimeout(r, 2000))]);
      resolve({
        code,
        signal,
        stdout: Buffer.concat(out),
        stderr: Buffer.concat(err).toString("utf8"),
        fds: fds.map((c) => Buffer.concat(c)),
        durationMs: performance.now() - start,
        timedOut,
      });
    });
  });
}
