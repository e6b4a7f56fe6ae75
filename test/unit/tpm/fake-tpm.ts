// A scripted TPM transport for hostile-input tests: answers each command with whatever the test
// function returns, and records what was sent.
import { ByteWriter } from "../../../platform/util/reader.ts";
import type { TpmTransport } from "../../../platform/tpm/transport/types.ts";

export class FakeTransport implements TpmTransport {
  readonly description = "fake TPM";
  readonly sent: Uint8Array[] = [];
  closed = false;
  constructor(private readonly answer: (cmd: Uint8Array, n: number) => Uint8Array | Promise<Uint8Array>) {}
  async transmit(command: Uint8Array): Promise<Uint8Array> {
    this.sent.push(command);
    return this.answer(command, this.sent.length - 1);
  }
  close(): void {
    this.closed = true;
  }
}

export function commandCode(cmd: Uint8Array): number {
  return new DataView(cmd.buffer, cmd.byteOffset).getUint32(6);
}

/** A response frame: tag, size computed, rc, then body. */
export function frame(rc: number, body: Uint8Array = new Uint8Array(0), tag = 0x8001): Uint8Array {
  return new ByteWriter()
    .u16be(tag)
    .u32be(10 + body.length)
    .u32be(rc)
    .bytes(body)
    .finish();
}

/** A TPM_ST_SESSIONS success response: handles, parameterSize, params, one password auth response. */
export function sessionFrame(params: Uint8Array, handles: number[] = []): Uint8Array {
  const w = new ByteWriter();
  for (const h of handles) w.u32be(h);
  w.u32be(params.length).bytes(params).u16be(0).u8(1).u16be(0);
  return frame(0, w.finish(), 0x8002);
}
