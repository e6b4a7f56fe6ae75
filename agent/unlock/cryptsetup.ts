// Running cryptsetup: the key goes to the child's stdin only (never argv/env/files), the child is
// bounded by the deadline, and the caller's key buffer is zeroed only after the child has exited
// (bun writes to pipes asynchronously; zeroing earlier could send zeros).
import { spawn } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import type { Deadline } from "../../platform/util/deadline.ts";
import { CvmError } from "../../platform/util/errors.ts";

const SBIN_DIRS = ["/usr/sbin", "/sbin", "/usr/bin", "/bin"];
const MAX_CAPTURE = 64 * 1024;

export interface CryptsetupResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Absolute path of the cryptsetup (or dmsetup) binary (config `unlock.cryptsetup` / `unlock.dmsetup`). */
export function findCryptsetup(
  configured: string,
  tool: "cryptsetup" | "dmsetup" | "veritysetup" = "cryptsetup",
): string {
  if (path.isAbsolute(configured)) {
    if (!fs.existsSync(configured))
      throw new CvmError("unlock", `${tool} not found at ${configured}`, {
        hint: `fix ${tool === "veritysetup" ? "verity" : "unlock"}.${tool} in the config, or include ${tool} in the initramfs`,
      });
    return configured;
  }
  for (const dir of SBIN_DIRS) {
    const p = path.join(dir, configured);
    if (fs.existsSync(p)) return p;
  }
  throw new CvmError("unlock", `${configured} not found in ${SBIN_DIRS.join(":")}`, {
    hint: `install ${tool} (Debian: ${tool === "dmsetup" ? "dmsetup" : "cryptsetup-bin"}) or include it in the initramfs`,
  });
}

/**
 * Run cryptsetup with `input` on stdin (or nothing: stdin is /dev/null; "inherit" lets it prompt on
 * the console). The environment is minimal and fixed: nothing of ours leaks into the child.
 * `extraFds` become the child's fds 3, 4, ... (a pipe holding a second key, for luksAddKey); the
 * child is started before this returns, so the caller may close its copies right away.
 */
export function runCryptsetup(
  bin: string,
  args: string[],
  input: Uint8Array | "inherit" | undefined,
  deadline: Deadline,
  doing: string,
  extraFds: number[] = [],
): Promise<CryptsetupResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(bin, args, {
      stdio: [
        input === "inherit" ? "inherit" : input ? "pipe" : "ignore",
        "pipe",
        input === "inherit" ? "inherit" : "pipe",
        ...extraFds,
      ],
      env: { PATH: SBIN_DIRS.join(":"), LC_ALL: "C" },
    });
    let stdout = "";
    let stderr = "";
    child.stdout?.on("data", (d: Buffer) => (stdout = (stdout + d.toString("utf8")).slice(0, MAX_CAPTURE)));
    child.stderr?.on("data", (d: Buffer) => (stderr = (stderr + d.toString("utf8")).slice(0, MAX_CAPTURE)));
    let settled = false;
    const fail = (e: CvmError) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      reject(e);
    };
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      // Do not wait for 'close': a grandchild may still hold the pipes open.
      child.stdout?.destroy();
      child.stderr?.destroy();
      fail(
        new CvmError("deadline", `deadline of ${deadline.totalMs / 1000}s exceeded while ${doing} (cryptsetup killed)`),
      );
    }, deadline.cap(deadline.remainingMs()));
    child.on("error", (e) => fail(new CvmError("unlock", `cannot run ${bin} (${doing}): ${e.message}`)));
    child.on("close", (code, signal) => {
      if (settled) return;
      if (signal) return fail(new CvmError("unlock", `cryptsetup was killed by ${signal} while ${doing}`));
      settled = true;
      clearTimeout(timer);
      resolve({ code: code ?? -1, stdout, stderr: stderr.trim() });
    });
    if (input instanceof Uint8Array && child.stdin) {
      // A child that exits early closes the pipe: EPIPE is its answer, reported via its exit code.
      child.stdin.on("error", () => {});
      child.stdin.end(input);
    }
  });
}

/**
 * cryptsetup(8) exit codes: 1 wrong parameters, 2 no permission (bad passphrase), 3 out of memory,
 * 4 wrong device specified, 5 device already exists or device is busy.
 */
export function cryptsetupError(r: CryptsetupResult, device: string, doing: string): CvmError {
  const said = r.stderr ? `: ${r.stderr.split("\n").slice(-3).join(" / ")}` : "";
  switch (r.code) {
    case 2:
      return new CvmError("wrong-key", `the key from the KBS does not open ${device} (cryptsetup exit 2${said})`, {
        hint: "the KBS released a key for a different volume, or the volume was re-keyed: check the resource path and the keyslots",
      });
    case 4:
      return new CvmError("volume", `cryptsetup cannot use ${device} (exit 4, wrong device${said})`);
    case 5:
      return new CvmError("volume", `${device} is busy or the dm name already exists (cryptsetup exit 5${said})`, {
        hint: "another mapping or mount holds the device, or uses this name: pick another unlock.volumes[].name or close it",
      });
    default:
      return new CvmError("unlock", `cryptsetup failed while ${doing} ${device} (exit ${r.code}${said})`);
  }
}
