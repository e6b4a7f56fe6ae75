// Gate tests on external tools. Locally a missing tool skips the test; under CI (CI=true) it is an
// error, because .ci/setup installs every tool and a silently skipped test proves nothing.
import { spawnSync } from "node:child_process";

export function toolsAvailable(...names: string[]): boolean {
  const PATH = `${process.env.PATH ?? ""}:/usr/local/sbin:/usr/sbin:/sbin:/usr/bin:/bin`;
  const missing = names.filter(
    (n) => spawnSync("sh", ["-c", `command -v "$1" >/dev/null`, "sh", n], { env: { PATH } }).status !== 0,
  );
  if (missing.length && process.env.CI === "true")
    throw new Error(`missing tools under CI: ${missing.join(", ")} (run .ci/setup)`);
  return missing.length === 0;
}
