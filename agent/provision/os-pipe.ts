// A real pipe(2) for handing a second secret to cryptsetup. Node and bun give a child's extra
// stdio slots as UNIX socketpairs, and cryptsetup opens its new-key file by name (/dev/fd/3):
// open(2) of a socket through /proc fails, open(2) of a pipe works. JS has no pipe(2); bun:ffi
// has, reached only through this guarded dynamic import so node/vitest never load bun:ffi.
export interface PipeFds {
  readFd: number;
  writeFd: number;
}
export type OsPipe = () => PipeFds;

/** pipe2(O_CLOEXEC) under bun; undefined under node (tests of the compiled binary cover it). */
export async function loadOsPipe(): Promise<OsPipe | undefined> {
  if (!process.versions.bun) return undefined;
  const m = await import("./os-pipe-bun.ts");
  return m.bunOsPipe();
}
