// Loads the bun:ffi ioctl only under bun, through a dynamic import: node and vitest never evaluate
// bun:ffi. Kept apart from ./ioctl.ts so that ffi-bun.ts (which needs ioctl.ts's types) and the
// loader do not import each other.
import type { IoctlDevice } from "./ioctl.ts";

/** The real ioctl under bun; undefined under node (tests inject their own). */
export async function loadNativeIoctl(): Promise<IoctlDevice | undefined> {
  if (!process.versions.bun) return undefined;
  const m = await import("./ffi-bun.ts");
  return m.bunIoctlDevice();
}
