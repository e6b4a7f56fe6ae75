// The ioctl seam. JS cannot call ioctl(2) or take a buffer's address; bun:ffi can. Everything above
// this interface is plain TypeScript that tests drive with a stand-in kernel, and the bun:ffi
// implementation (./ffi-bun.ts) is only ever reached through ./native-ioctl.ts's guarded dynamic import, so node
// and vitest never load bun:ffi (docs/spec/bun-runtime.md §2).

export interface IoctlResult {
  /** ioctl's return value (-1 on failure). */
  rc: number;
  /** errno when rc < 0, else 0. */
  errno: number;
}

export type Ioctl = (fd: number, request: bigint, arg: Uint8Array) => IoctlResult;

/** An ioctl plus a way to put buffer addresses into argument structs. */
export interface IoctlDevice {
  ioctl: Ioctl;
  /** Address of a buffer's first byte. The buffer must stay referenced until the ioctl returns. */
  addressOf(buf: Uint8Array): bigint;
}

/** _IOC(dir, type, nr, size) on x86-64 (asm-generic/ioctl.h). */
export function ioc(dir: number, type: string, nr: number, size: number): bigint {
  return (BigInt(dir) << 30n) | (BigInt(size) << 16n) | (BigInt(type.charCodeAt(0)) << 8n) | BigInt(nr);
}
const IOC_READ_WRITE = 3;

/** struct snp_guest_request_ioctl is 0x20 bytes (docs/spec/snp-abi.md §1.1). */
export const SNP_GUEST_REQUEST_SIZE = 0x20;
export const SNP_GET_REPORT = ioc(IOC_READ_WRITE, "S", 0, SNP_GUEST_REQUEST_SIZE); // 0xC0205300
export const SNP_GET_DERIVED_KEY = ioc(IOC_READ_WRITE, "S", 1, SNP_GUEST_REQUEST_SIZE); // 0xC0205301
export const SNP_GET_EXT_REPORT = ioc(IOC_READ_WRITE, "S", 2, SNP_GUEST_REQUEST_SIZE); // 0xC0205302

export const ERRNO = { EIO: 5, EAGAIN: 11, EFAULT: 14, EBUSY: 16, EINVAL: 22, ENOTTY: 25, ETIMEDOUT: 110 } as const;
