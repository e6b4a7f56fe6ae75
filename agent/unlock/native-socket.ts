// Loads the bun:ffi unix sockets only under bun, through a dynamic import (node and vitest never
// evaluate bun:ffi). Apart from ./unix-socket.ts so that unix-socket-bun.ts, which needs its
// types, and the loader do not import each other.
import type { UnixSockets } from "./unix-socket.ts";

/** The FFI sockets under bun; undefined under node (tests of the compiled binary cover them). */
export async function loadUnixSockets(): Promise<UnixSockets | undefined> {
  if (!process.versions.bun) return undefined;
  const m = await import("./unix-socket-bun.ts");
  return m.bunUnixSockets();
}
