// Making configfs available. systemd normally mounts it (sys-kernel-config.mount); an initramfs
// without that unit may not have it. We mount it ourselves only when running as root against the
// real "/" root; a stand-in root (tests) is never mounted on.
import { spawn } from "node:child_process";
import * as path from "node:path";
import type { PlatformEnv } from "../types.ts";
import { CvmError } from "../util/errors.ts";
import { fileText, pathExists, readFileIfReadable } from "../util/files.ts";

/** A mount table this size is not an initramfs; refusing beats holding it. */
const MAX_MOUNT_TABLE = 4 * 1024 * 1024;

const MOUNT_TIMEOUT_MS = 5000;

/** Tests point PlatformEnv.paths.root at a stand-in tree; everything real uses "/". */
export function isStandInRoot(env: PlatformEnv): boolean {
  return path.resolve(env.paths.root) !== "/";
}

/** Is a configfs mounted at `mountPoint` according to /proc/mounts? */
export function configfsMounted(procMounts: string, mountPoint = "/sys/kernel/config"): boolean {
  return procMounts.split("\n").some((line) => {
    const f = line.split(" ");
    return f[1] === mountPoint && f[2] === "configfs";
  });
}

function runMount(env: PlatformEnv): Promise<void> {
  const timeoutMs = env.deadline.cap(MOUNT_TIMEOUT_MS);
  return new Promise((resolve, reject) => {
    const child = spawn("mount", ["-t", "configfs", "none", "/sys/kernel/config"], {
      stdio: ["ignore", "ignore", "pipe"],
    });
    let stderr = "";
    child.stderr.on("data", (d: Buffer) => (stderr = (stderr + d.toString("utf8")).slice(-512)));
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      reject(new CvmError("platform", `mounting configfs did not finish within ${timeoutMs} ms`));
    }, timeoutMs);
    child.on(
      "error",
      (e) => (clearTimeout(timer), reject(new CvmError("platform", `cannot run mount for configfs: ${e.message}`))),
    );
    child.on("close", (code) => {
      clearTimeout(timer);
      if (code === 0) resolve();
      else
        reject(
          new CvmError("platform", `mount -t configfs failed (exit ${code}): ${stderr.trim()}`, {
            hint: "mount configfs on /sys/kernel/config",
          }),
        );
    });
  });
}

/**
 * Make sure the configfs-tsm report directory can exist: mount configfs when it is missing and we
 * may. Returns whether the report directory is now present (false: this kernel has no configfs-tsm).
 */
export async function ensureConfigfs(env: PlatformEnv): Promise<boolean> {
  if (pathExists(env.paths.tsmReport)) return true;
  if (isStandInRoot(env)) return false;
  const isRoot = typeof process.getuid === "function" && process.getuid() === 0;
  if (!isRoot || !pathExists("/sys/kernel/config")) return false;
  const mounts = readFileIfReadable("/proc/mounts", { what: "/proc/mounts", max: MAX_MOUNT_TABLE });
  if (mounts === undefined || configfsMounted(fileText(mounts))) return false;
  env.log.info("mounting configfs on /sys/kernel/config for configfs-tsm");
  await runMount(env);
  return pathExists(env.paths.tsmReport);
}
