// ioctl(2) through bun:ffi. Only imported by native-ioctl.ts when running under bun.
import { dlopen, FFIType, ptr, read } from "bun:ffi";
import type { IoctlDevice } from "./ioctl.ts";

export function bunIoctlDevice(): IoctlDevice {
  const libc = dlopen("libc.so.6", {
    ioctl: { args: [FFIType.i32, FFIType.u64, FFIType.ptr], returns: FFIType.i32 },
    __errno_location: { args: [], returns: FFIType.ptr },
  });
  return {
    ioctl(fd, request, arg) {
      const rc = libc.symbols.ioctl(fd, request, ptr(arg));
      // read errno right after the call, before anything else can touch it
      const errno = rc < 0 ? read.i32(libc.symbols.__errno_location()!, 0) : 0;
      return { rc, errno };
    },
    addressOf(buf) {
      return BigInt(ptr(buf));
    },
  };
}
