// /dev/tpmrm0 (or /dev/tpm0): one write(2) per command, then read(2) the response
// (docs/spec/tpm.md §1, docs/spec/bun-runtime.md §3). Opened "r+" (O_RDWR, never O_NONBLOCK, never
// Bun.write/writeFile). Without O_NONBLOCK the kernel runs the command inside write(2), which the
// driver bounds only by its own TPM timeouts (minutes). So the write and read are the asynchronous
// fs.write/fs.read (still one syscall each, on libuv's thread pool) raced against the per-command
// timeout: a vTPM that never answers costs a stuck pool thread, not the run's deadline.
import * as fs from "node:fs";
import { promisify } from "node:util";
import { CvmError, ParseError } from "../../util/errors.ts";
import { TPM_HEADER_SIZE, TPM_MAX_MESSAGE } from "../constants.ts";
import { responseFrameSize } from "../marshal.ts";
import type { TpmTransport } from "./types.ts";

const DRIVER_HINT =
  "the VM needs a (v)TPM and its driver: modprobe tpm_crb (or tpm_tis); tpm_crb/tpm_tis must be in the initramfs";

export function openDevice(path: string): TpmTransport {
  let fd: number;
  try {
    fd = fs.openSync(path, "r+");
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === "ENOENT") throw new CvmError("platform", `no TPM device at ${path}`, { hint: DRIVER_HINT });
    if (code === "EACCES" || code === "EPERM")
      throw new CvmError("platform", `no permission to open ${path}`, {
        hint: "run as root or as a member of the tss group",
      });
    throw new CvmError("platform", `cannot open ${path}: ${(e as Error).message}`, { hint: DRIVER_HINT });
  }
  return new DeviceTransport(path, fd);
}

const write = promisify(fs.write) as (
  fd: number,
  b: Uint8Array,
  off: number,
  len: number,
  pos: null,
) => Promise<{ bytesWritten: number }>;
const read = promisify(fs.read) as (
  fd: number,
  b: Uint8Array,
  off: number,
  len: number,
  pos: null,
) => Promise<{ bytesRead: number }>;

class DeviceTransport implements TpmTransport {
  private open = true;
  /** Set when a command timed out: its write/read may still be pending in the kernel. */
  private stuck = false;
  constructor(
    readonly description: string,
    private readonly fd: number,
  ) {}

  async transmit(command: Uint8Array, timeoutMs: number): Promise<Uint8Array> {
    if (!this.open) throw new CvmError("internal", `${this.description} is closed`);
    if (this.stuck)
      throw new CvmError("platform", `${this.description} did not answer an earlier command; not sending more`);
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        this.stuck = true;
        reject(
          new CvmError("platform", `${this.description} did not answer within ${Math.round(timeoutMs / 1000)} s`, {
            hint: "the (v)TPM is hung or very slow",
          }),
        );
      }, timeoutMs);
    });
    try {
      return await Promise.race([this.exchange(command), timeout]);
    } finally {
      clearTimeout(timer);
    }
  }

  private async exchange(command: Uint8Array): Promise<Uint8Array> {
    let n: number;
    try {
      n = (await write(this.fd, command, 0, command.length, null)).bytesWritten;
    } catch (e) {
      throw this.ioError("write", e);
    }
    if (n !== command.length)
      throw new CvmError("platform", `${this.description}: short write (${n} of ${command.length} bytes)`);
    const buf = Buffer.alloc(TPM_MAX_MESSAGE + 1);
    let got = 0;
    let want = TPM_HEADER_SIZE;
    // Normally one read returns the whole response; partial reads continue from the offset.
    while (got < want) {
      let m: number;
      try {
        m = (await read(this.fd, buf, got, buf.length - got, null)).bytesRead;
      } catch (e) {
        throw this.ioError("read", e);
      }
      if (m === 0)
        throw new ParseError(
          "TPM response",
          "responseSize",
          got,
          `${this.description} returned end-of-file after ${got} byte(s)`,
        );
      got += m;
      if (got >= TPM_HEADER_SIZE) want = responseFrameSize(buf.subarray(0, TPM_HEADER_SIZE));
    }
    if (got > want)
      throw new ParseError("TPM response", "responseSize", 2, `header says ${want} bytes but ${got} were received`);
    return new Uint8Array(buf.subarray(0, got));
  }

  close(): void {
    if (!this.open) return;
    this.open = false;
    try {
      fs.closeSync(this.fd);
    } catch {
      // closing a device fd can only fail if it is already gone
    }
  }

  private ioError(op: string, e: unknown): CvmError {
    const code = (e as NodeJS.ErrnoException).code;
    const why: Record<string, string> = {
      ENOMEM: "the kernel resource manager is out of object/session slots (3 per open file)",
      EBUSY: "a previous command's response was never read",
      E2BIG: "command larger than the kernel's 4096-byte TPM buffer",
      EINVAL: "the kernel rejected the command framing",
      EPIPE: "the TPM went away",
    };
    return new CvmError(
      "platform",
      `${this.description}: ${op} failed: ${code ? (why[code] ?? code) : (e as Error).message}`,
      { cause: e },
    );
  }
}
