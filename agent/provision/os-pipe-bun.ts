// pipe2(2) through bun:ffi. Only imported by ./native-pipe.ts when running under bun.
import { dlopen, FFIType, ptr, read } from "bun:ffi";
import type { OsPipe } from "./os-pipe.ts";

const O_CLOEXEC = 0o2000000;

export function bunOsPipe(): OsPipe {
  const libc = dlopen("libc.so.6", {
    pipe2: { args: [FFIType.ptr, FFIType.i32], returns: FFIType.i32 },
    __errno_location: { args: [], returns: FFIType.ptr },
  });
  return () => {
    const fds = new Int32Array(2);
    // O_CLOEXEC: neither end leaks into a child unless spawn maps it explicitly.
    const rc = libc.symbols.pipe2(ptr(fds), O_CLOEXEC);
    if (rc !== 0) throw new Error(`pipe2 failed (errno ${read.i32(libc.symbols.__errno_location()!, 0)})`);
    return { readFd: fds[0]!, writeFd: fds[1]! };
  };
}
