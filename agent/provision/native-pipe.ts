// Loads the bun:ffi pipe only under bun, through a dynamic import (node and vitest never evaluate
// bun:ffi). Apart from ./os-pipe.ts so that os-pipe-bun.ts, which needs its types, and the loader
// do not import each other.
import type { OsPipe } from "./os-pipe.ts";

/** pipe2(O_CLOEXEC) under bun; undefined under node (tests of the compiled binary cover it). */
export async function loadOsPipe(): Promise<OsPipe | undefined> {
  if (!process.versions.bun) return undefined;
  const m = await import("./os-pipe-bun.ts");
  return m.bunOsPipe();
}
