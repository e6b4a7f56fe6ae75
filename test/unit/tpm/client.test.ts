// The client under hostile TPM answers (fake transport): bounded retries, deadline, framing
// errors, PCR_Read loop termination, transient keys flushed on errors.
import { describe, expect, it } from "vitest";
import { Deadline } from "../../../platform/util/deadline.ts";
import { silentLogger } from "../../../platform/util/log.ts";
import { CvmError, ParseError } from "../../../platform/util/errors.ts";
import { ByteWriter } from "../../../platform/util/reader.ts";
import { Tpm } from "../../../platform/tpm/client.ts";
import { TPM_ALG, TPM_CC } from "../../../platform/tpm/constants.ts";
import { TpmError } from "../../../platform/tpm/rc.ts";
import { getProperties, pcrRead } from "../../../platform/tpm/operations.ts";
import { withAttestationKey } from "../../../platform/tpm/attestation/ak.ts";
import { FakeTransport, commandCode, frame, sessionFrame } from "./fake-tpm.ts";

const tpmWith = (t: FakeTransport, deadlineMs = 10_000, opts = {}) =>
  new Tpm(t, new Deadline(deadlineMs), silentLogger, opts);
const getCap = () =>
  new ByteWriter().u16be(0x8001).u32be(22).u32be(TPM_CC.GetCapability).u32be(6).u32be(0x100).u32be(1).finish();
const propsBody = () => new ByteWriter().u8(0).u32be(6).u32be(1).u32be(0x105).u32be(0x49424d00).finish();

describe("retry policy", () => {
  it("resends on TPM_RC_RETRY, TESTING and YIELDED, then succeeds", async () => {
    const rcs = [0x922, 0x90a, 0x908];
    const t = new FakeTransport((_c, n) => (n < rcs.length ? frame(rcs[n]!) : frame(0, propsBody())));
    const props = await getProperties(tpmWith(t));
    expect(props.get(0x105)).toBe(0x49424d00);
    expect(t.sent).toHaveLength(4);
    expect(new Set(t.sent.map((c) => Buffer.from(c).toString("hex"))).size).toBe(1); // identical command resent
  });

  it("does not retry TPM_RC_LOCKOUT (dictionary attack) or other errors", async () => {
    const t = new FakeTransport(() => frame(0x921));
    await expect(getProperties(tpmWith(t))).rejects.toThrow(/TPM_RC_LOCKOUT/);
    expect(t.sent).toHaveLength(1);
  });

  it("a TPM stuck in TPM_RC_RETRY gives a clear error after bounded attempts", async () => {
    const t = new FakeTransport(() => frame(0x922));
    const t0 = Date.now();
    const e = await getProperties(tpmWith(t, 60_000, { backoffMs: 1 })).catch((x) => x);
    expect(e).toBeInstanceOf(TpmError);
    expect(e.message).toMatch(/TPM2_GetCapability \(still RETRY after 9 attempts\) failed: TPM_RC_RETRY/);
    expect(t.sent).toHaveLength(9);
    expect(Date.now() - t0).toBeLessThan(2_000);
  });

  it("a TPM stuck in TPM_RC_RETRY cannot outlive the deadline", async () => {
    const t = new FakeTransport(() => frame(0x000b0922));
    const t0 = Date.now();
    const e = await getProperties(tpmWith(t, 250, { maxRetries: 1000, backoffMs: 20 })).catch((x) => x);
    expect(e).toBeInstanceOf(CvmError);
    expect(e.kind).toBe("deadline");
    expect(e.message).toMatch(/TPM2_GetCapability.*TPM_RC_RETRY/);
    expect(Date.now() - t0).toBeLessThan(1_000);
  });
});

describe("malformed frames", () => {
  const cases: [string, Uint8Array, RegExp][] = [
    [
      "truncated (header says more)",
      frame(0, propsBody()).subarray(0, 20),
      /header says 27 bytes but 20 were received/,
    ],
    ["trailing bytes", new Uint8Array([...frame(0, propsBody()), 0, 0]), /header says 27 bytes but 29/],
    [
      "wrong tag",
      (() => {
        const f = frame(0, propsBody());
        f[1] = 0x03;
        return f;
      })(),
      /0x8003 is neither/,
    ],
    [
      "oversized size",
      new ByteWriter().u16be(0x8001).u32be(0x10000).u32be(0).finish(),
      /65536 exceeds the 4096-byte maximum/,
    ],
    ["size below header", new ByteWriter().u16be(0x8001).u32be(4).u32be(0).finish(), /smaller than the 10-byte header/],
    ["empty", new Uint8Array(0), /tag/],
    ["sessions tag on a no-sessions command", frame(0, propsBody(), 0x8002), /0x8002 where 0x8001 was expected/],
    [
      "list count beyond the bytes",
      frame(0, new ByteWriter().u8(0).u32be(6).u32be(3).u32be(0x105).u32be(1).finish()),
      /tpmProperties\[1\]\.property/,
    ],
    ["moreData not a boolean", frame(0, new ByteWriter().u8(7).u32be(6).u32be(0).finish()), /TPMI_YES_NO/],
    ["huge list count", frame(0, new ByteWriter().u8(0).u32be(6).u32be(0xffffffff).finish()), /exceeds the limit/],
  ];
  it.each(cases)("%s → ParseError", async (_name, rsp, msg) => {
    const t = new FakeTransport(() => rsp);
    const e = await getProperties(tpmWith(t)).catch((x) => x);
    expect(e).toBeInstanceOf(ParseError);
    expect(e.message).toMatch(msg);
    expect(e.kind).toBe("evidence");
  });
});

function pcrRsp(counter: number, hash: number, pcrs: number[], size = 32): Uint8Array {
  const bitmap = new Uint8Array(3);
  for (const p of pcrs) bitmap[p >> 3]! |= 1 << (p & 7);
  const w = new ByteWriter().u32be(counter).u32be(pcrs.length ? 1 : 0);
  if (pcrs.length) w.u16be(hash).u8(3).bytes(bitmap);
  w.u32be(pcrs.length);
  for (const p of pcrs) w.sized16be(new Uint8Array(size).fill(p));
  return frame(0, w.finish());
}

/** Selected PCR numbers of a PCR_Read command's first bank. */
function requested(cmd: Uint8Array): number[] {
  const bm = cmd.subarray(10 + 4 + 3, 10 + 4 + 3 + 3);
  return Array.from({ length: 24 }, (_, i) => i).filter((i) => bm[i >> 3]! & (1 << (i & 7)));
}

describe("PCR_Read loop", () => {
  it("keeps asking until every PCR came back (8 per answer)", async () => {
    const t = new FakeTransport((c) => pcrRsp(5, TPM_ALG.SHA256, requested(c).slice(0, 8)));
    const v = await pcrRead(tpmWith(t), [{ hash: TPM_ALG.SHA256, pcrs: Array.from({ length: 24 }, (_, i) => i) }]);
    expect(t.sent).toHaveLength(3);
    expect(v.map((x) => x.pcr)).toEqual(Array.from({ length: 24 }, (_, i) => i));
    expect(v[23]!.digest[0]).toBe(23);
  });

  it("stops with a clear error when the TPM returns nothing (inactive bank) instead of looping", async () => {
    const t = new FakeTransport(() => pcrRsp(1, TPM_ALG.SHA256, []));
    await expect(pcrRead(tpmWith(t), [{ hash: TPM_ALG.SHA256, pcrs: [0, 1] }])).rejects.toThrow(
      /returned nothing for sha256:0,1/,
    );
    expect(t.sent).toHaveLength(1);
  });

  it("rejects PCRs that were not requested and digests of the wrong size", async () => {
    await expect(
      pcrRead(tpmWith(new FakeTransport(() => pcrRsp(1, TPM_ALG.SHA256, [9]))), [{ hash: TPM_ALG.SHA256, pcrs: [0] }]),
    ).rejects.toThrow(/PCR 9, which was not requested/);
    await expect(
      pcrRead(tpmWith(new FakeTransport(() => pcrRsp(1, TPM_ALG.SHA256, [0], 20))), [
        { hash: TPM_ALG.SHA256, pcrs: [0] },
      ]),
    ).rejects.toThrow(ParseError);
  });

  it("re-reads when the update counter moves between chunks, and gives up after 3 tries", async () => {
    let counter = 0;
    const t = new FakeTransport((c) => pcrRsp(counter++, TPM_ALG.SHA256, requested(c).slice(0, 8)));
    await expect(
      pcrRead(tpmWith(t), [{ hash: TPM_ALG.SHA256, pcrs: Array.from({ length: 24 }, (_, i) => i) }]),
    ).rejects.toThrow(/kept changing/);
    expect(t.sent).toHaveLength(6);
  });
});

describe("transient keys", () => {
  it("the derived AK is flushed when the work with it fails", async () => {
    const createPrimaryRsp = () => {
      const pub = new ByteWriter()
        .u16be(0x0001)
        .u16be(0x000b)
        .u32be(0x00050072)
        .u16be(0)
        .u16be(0x0010)
        .u16be(0x0014)
        .u16be(0x000b)
        .u16be(2048)
        .u32be(0)
        .sized16be(new Uint8Array(256).fill(0xab))
        .finish();
      const params = new ByteWriter()
        .sized16be(pub)
        .u16be(0)
        .u16be(0)
        .u16be(0x8021)
        .u32be(0x4000000b)
        .u16be(0)
        .sized16be(new Uint8Array(34))
        .finish();
      return sessionFrame(params, [0x80ffffff]);
    };
    const t = new FakeTransport((c) => {
      switch (commandCode(c)) {
        case TPM_CC.ReadPublic:
          return frame(0x18b); // no persistent AK
        case TPM_CC.CreatePrimary:
          return createPrimaryRsp();
        case TPM_CC.FlushContext:
          return frame(0);
        default:
          return frame(0x101);
      }
    });
    await expect(
      withAttestationKey(tpmWith(t), 0x81010002, async () => {
        throw new Error("quote failed");
      }),
    ).rejects.toThrow("quote failed");
    const flush = t.sent.find((c) => commandCode(c) === TPM_CC.FlushContext);
    expect(flush && Buffer.from(flush.subarray(10)).toString("hex")).toBe("80ffffff");
  });
});
