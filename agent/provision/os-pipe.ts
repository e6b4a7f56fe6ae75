// A real pipe(2) for handing a second secret to cryptsetup. Node and bun give a child's extra
// stdio slots as UNIX socketpairs, and cryptsetup opens its new-key file by name (/dev/fd/3):
// open(2) of a socket through /proc fails, open(2) of a pipe works. JS has no pipe(2); bun:ffi
// has, reached only through ./native-pipe.ts's guarded dynamic import so node/vitest never load bun:ffi.
export interface PipeFds {
  readFd: number;
  writeFd: number;
}
export type OsPipe = () => PipeFds;
