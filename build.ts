// Builds dist/cvm-unlock: one bun-compiled binary (see docs/ARCHITECTURE.md).
// Flags per docs/spec/bun-runtime.md §6: never autoload .env/bunfig.toml from the working
// directory (they can switch TLS checks off or preload code), minify + bytecode (halves startup),
// x64 baseline target (TCG and older CPUs lack AVX2). The target runtime is the npm package
// @oven/bun-linux-x64-baseline, pinned with its integrity in package-lock.json: without
// --compile-executable-path bun would download it at build time, outside the lock. Never strip the
// result: strip destroys the embedded program. The JIT's tier-up thresholds start 1000x higher
// (--compile-jit-policy): the agent is a short one-shot run, its code rarely runs often enough to
// pay back a compilation, and under TCG (a CVM image tested in QEMU, or a nested guest) every
// freshly compiled piece of machine code must be translated again; docs/PERFORMANCE.md
// "Runtime start-up under TCG" measures it (bench/startup.ts).
import { execFileSync, spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";

const root = path.dirname(new URL(import.meta.url).pathname);
const pkg = JSON.parse(fs.readFileSync(path.join(root, "package.json"), "utf8")) as { version: string };

function gitCommit(): string {
  try {
    const c = execFileSync("git", ["rev-parse", "--short=12", "HEAD"], {
      cwd: root,
      encoding: "utf8",
      stdio: ["ignore", "pipe", "ignore"],
    }).trim();
    const dirty = execFileSync("git", ["status", "--porcelain", "--untracked-files=no"], {
      cwd: root,
      encoding: "utf8",
    }).trim();
    return dirty ? `${c}-dirty` : c;
  } catch {
    return "unknown";
  }
}

/**
 * JavaScriptCore's tier-up thresholds are multiplied by this for the whole run (see above);
 * `--jit-policy=N` builds a comparison binary for bench/startup.ts (1 = the runtime's default).
 */
const jitFlag = process.argv.find((a) => a.startsWith("--jit-policy="));
const JIT_POLICY = jitFlag ? Number(jitFlag.slice("--jit-policy=".length)) : 1000;
if (!Number.isFinite(JIT_POLICY) || JIT_POLICY < 1) {
  console.error(`build: --jit-policy must be a number >= 1, not '${jitFlag}'`);
  process.exit(2);
}

const outfile = process.argv.slice(2).find((a) => !a.startsWith("--")) ?? path.join(root, "dist", "cvm-unlock");
fs.mkdirSync(path.dirname(outfile), { recursive: true });
// Build in a temporary directory and rename, so that a concurrent test never runs a half-written binary.
// The file keeps its final name there: bun embeds it (/$bunfs/root/NAME), and a PID in it would make
// every build differ.
const tmpDir = `${outfile}.tmp-${process.pid}`;
fs.mkdirSync(tmpDir);
const tmp = path.join(tmpDir, path.basename(outfile));
const bun = process.execPath.includes("bun") ? process.execPath : path.join(root, "node_modules", ".bin", "bun");
const runtime = path.join(root, "node_modules", "@oven", "bun-linux-x64-baseline", "bin", "bun");
if (!fs.existsSync(runtime)) {
  fs.rmSync(tmpDir, { recursive: true, force: true });
  console.error(`build: ${runtime} missing: run npm ci (the target runtime is a pinned dev dependency)`);
  process.exit(1);
}
const args = [
  "build",
  "--compile",
  "--no-compile-autoload-dotenv",
  "--no-compile-autoload-bunfig",
  "--target=bun-linux-x64-baseline",
  `--compile-executable-path=${runtime}`,
  "--minify",
  "--bytecode",
  "--format=esm",
  `--compile-jit-policy=${JIT_POLICY}`,
  `--define=CVM_UNLOCK_VERSION=${JSON.stringify(pkg.version)}`,
  `--define=CVM_UNLOCK_COMMIT=${JSON.stringify(gitCommit())}`,
  path.join(root, "agent", "main.ts"),
  "--outfile",
  tmp,
];
const r = spawnSync(bun, args, { cwd: root, stdio: "inherit" });
if (r.status !== 0) {
  fs.rmSync(tmpDir, { recursive: true, force: true });
  console.error(`build failed (bun exit ${r.status})`);
  process.exit(1);
}
fs.renameSync(tmp, outfile);
fs.rmdirSync(tmpDir);
const size = fs.statSync(outfile).size;
console.log(
  `built ${path.relative(process.cwd(), outfile)}: ${size} bytes (${(size / 1048576).toFixed(1)} MiB), version ${pkg.version} (${gitCommit()})`,
);
