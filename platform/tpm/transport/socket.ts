// swtpm's data port (TCP) or a unix stream socket speaking the same raw framing: write a TPM
// command, read a response whose length comes from its own header (docs/spec/tpm.md §7).
// Every connect and read is bounded by a timeout; oversized or garbled frames are rejected
// before their body is buffered.
import * as net from "node:net";
import { CvmError, ParseError } from "../../util/errors.ts";
import { TPM_HEADER_SIZE, TPM_MAX_MESSAGE } from "../constants.ts";
import { responseFrameSize } from "../marshal.ts";
import type { TpmTransport } from "./types.ts";

export type SocketTarget = { host: string; port: number } | { path: string };

export async function openSocket(target: SocketTarget, connectTimeoutMs: number): Promise<TpmTransport> {
  const description = "path" in target ? `TPM socket ${target.path}` : `swtpm ${target.host}:${target.port}`;
  const sock = await new Promise<net.Socket>((resolve, reject) => {
    const s =
      "path" in target ? net.connect({ path: target.path }) : net.connect({ host: target.host, port: target.port });
    const timer = setTimeout(() => {
      s.destroy();
      reject(new CvmError("platform", `${description}: no connection within ${connectTimeoutMs} ms`));
    }, connectTimeoutMs);
    s.once("connect", () => (clearTimeout(timer), resolve(s)));
    s.once("error", (e) => {
      clearTimeout(timer);
      s.destroy();
      reject(
        new CvmError("platform", `${description}: cannot connect: ${e.message}`, {
          hint: "is swtpm running with --server type=tcp on that port?",
        }),
      );
    });
  });
  sock.setNoDelay(true);
  return new SocketTransport(description, sock);
}

interface Pending {
  resolve(b: Uint8Array): void;
  reject(e: Error): void;
  timer: ReturnType<typeof setTimeout>;
}

class SocketTransport implements TpmTransport {
  private chunks: Buffer[] = [];
  private received = 0;
  private pending: Pending | undefined;
  private failure: Error | undefined;

  constructor(
    readonly description: string,
    private readonly sock: net.Socket,
  ) {
    sock.on("data", (d: Buffer) => this.onData(d));
    sock.on("error", (e) => this.fail(new CvmError("platform", `${description}: ${e.message}`)));
    sock.on("close", () => this.fail(new CvmError("platform", `${description}: connection closed by the TPM`)));
  }

  transmit(command: Uint8Array, timeoutMs: number): Promise<Uint8Array> {
    if (this.failure) return Promise.reject(this.failure);
    if (this.pending)
      return Promise.reject(new CvmError("internal", `${this.description}: a command is already in flight`));
    if (this.received > 0)
      return Promise.reject(this.protocolError(0, `${this.received} unsolicited byte(s) arrived between commands`));
    return new Promise<Uint8Array>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending = undefined;
        // A late response would desynchronise the stream: give up on this connection.
        this.failure = new CvmError("platform", `${this.description}: no complete response within ${timeoutMs} ms`);
        this.sock.destroy();
        reject(this.failure);
      }, timeoutMs);
      this.pending = { resolve, reject, timer };
      this.sock.write(command);
    });
  }

  close(): void {
    this.failure ??= new CvmError("internal", `${this.description} is closed`);
    this.sock.destroy();
  }

  private onData(d: Buffer): void {
    this.chunks.push(d);
    this.received += d.length;
    if (!this.pending) {
      // Unsolicited bytes are reported at the next transmit; a peer that floods us is cut off now.
      if (this.received > TPM_MAX_MESSAGE) {
        this.failure ??= this.protocolError(0, `${this.received} unsolicited bytes arrived between commands`);
        this.chunks = [];
        this.sock.destroy();
      }
      return;
    }
    const all = this.received === d.length ? d : Buffer.concat(this.chunks);
    if (all.length < TPM_HEADER_SIZE) return;
    let size: number;
    try {
      size = responseFrameSize(all);
    } catch (e) {
      return this.settle(e as Error);
    }
    if (all.length < size) return;
    if (all.length > size)
      return this.settle(this.protocolError(2, `header says ${size} bytes but ${all.length} arrived`));
    this.chunks = [];
    this.received = 0;
    this.settle(undefined, new Uint8Array(all));
  }

  private settle(err: Error | undefined, value?: Uint8Array): void {
    const p = this.pending;
    if (!p) return;
    this.pending = undefined;
    clearTimeout(p.timer);
    if (err) {
      this.failure = err;
      this.sock.destroy();
      p.reject(err);
    } else p.resolve(value!);
  }

  private fail(e: Error): void {
    this.failure ??= e;
    this.settle(this.failure);
  }

  private protocolError(offset: number, problem: string): ParseError {
    return new ParseError("TPM response", "responseSize", offset, `${this.description}: ${problem}`);
  }
}
