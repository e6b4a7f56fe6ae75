// collectTpmEvidence against a scripted TPM: re-quotes when PCRs move between quote and read,
// refuses quotes that do not answer the question asked, falls back from unusable persistent keys,
// and always flushes the derived AK.
import { createHash } from "node:crypto";
import { describe, expect, it } from "vitest";
import { Deadline } from "../../../platform/util/deadline.ts";
import { silentLogger } from "../../../platform/util/log.ts";
import { concat, fromB64 } from "../../../platform/util/bytes.ts";
import { ByteWriter } from "../../../platform/util/reader.ts";
import { Tpm } from "../../../platform/tpm/client.ts";
import { TPM_CC } from "../../../platform/tpm/constants.ts";
import { collectTpmEvidence } from "../../../platform/tpm/attestation/evidence.ts";
import { decodeQuoteAttest } from "../../../platform/tpm/structures.ts";
import { FakeTransport, commandCode, frame, sessionFrame } from "./fake-tpm.ts";

const sha256 = (b: Uint8Array) => new Uint8Array(createHash("sha256").update(b).digest());
const RSA_PUB = new ByteWriter()
  .u16be(0x0001)
  .u16be(0x000b)
  .u32be(0x00050072)
  .u16be(0)
  .u16be(0x0010)
  .u16be(0x0014)
  .u16be(0x000b)
  .u16be(2048)
  .u32be(0);
const ECC_PUB = new ByteWriter()
  .u16be(0x0023)
  .u16be(0x000b)
  .u32be(0x00030072)
  .u16be(0)
  .u16be(0x0010)
  .u16be(0x0018)
  .u16be(0x000b)
  .u16be(0x0003)
  .u16be(0x0010)
  .sized16be(new Uint8Array(32).fill(1))
  .sized16be(new Uint8Array(32).fill(2))
  .finish();

/** A valid 2048-bit modulus is not needed for framing, but SPKI conversion wants a real-looking one. */
function rsaPublic(): Uint8Array {
  const n = new Uint8Array(256).fill(0xc5);
  n[0] = 0xd1;
  return concat(RSA_PUB.finish(), new ByteWriter().sized16be(n).finish());
}

interface Script {
  persistent?: Uint8Array; // TPMT_PUBLIC at the AK handle, or absent
  pcrsAtRead: (readNo: number) => Uint8Array[]; // 24 values returned by the n-th full PCR read
  pcrsAtQuote: (quoteNo: number) => Uint8Array[]; // values the n-th quote's pcrDigest covers
  extraData?: (qd: Uint8Array) => Uint8Array;
  selectionBitmap?: number[];
}

function scriptedTpm(s: Script) {
  let quotes = 0;
  let reads = 0;
  let readChunk = 0;
  const flushed: number[] = [];
  const t = new FakeTransport((cmd) => {
    switch (commandCode(cmd)) {
      case TPM_CC.GetCapability:
        return frame(
          0,
          new ByteWriter()
            .u8(0)
            .u32be(5)
            .u32be(1)
            .u16be(0x000b)
            .u8(3)
            .bytes(Uint8Array.from([0xff, 0xff, 0xff]))
            .finish(),
        );
      case TPM_CC.ReadPublic: {
        if (!s.persistent) return frame(0x18b);
        return frame(
          0,
          new ByteWriter().sized16be(s.persistent).sized16be(new Uint8Array(34)).sized16be(new Uint8Array(34)).finish(),
        );
      }
      case TPM_CC.CreatePrimary: {
        const params = new ByteWriter()
          .sized16be(rsaPublic())
          .u16be(0)
          .u16be(0)
          .u16be(0x8021)
          .u32be(0x4000000b)
          .u16be(0)
          .sized16be(new Uint8Array(34))
          .finish();
        return sessionFrame(params, [0x80ffffff]);
      }
      case TPM_CC.Quote: {
        // qualifyingData sits after header(10) + handle(4) + authSize(4) + auth(9)
        const qd = cmd.subarray(27 + 2, 27 + 2 + ((cmd[27]! << 8) | cmd[28]!));
        const values = s.pcrsAtQuote(quotes++);
        const w = new ByteWriter()
          .u32be(0xff544347)
          .u16be(0x8018)
          .sized16be(new Uint8Array(34))
          .sized16be(s.extraData ? s.extraData(qd) : qd);
        w.u64be(1n)
          .u32be(0)
          .u32be(0)
          .u8(1)
          .u64be(0n)
          .u32be(1)
          .u16be(0x000b)
          .u8(3)
          .bytes(Uint8Array.from(s.selectionBitmap ?? [0xff, 0xff, 0xff]));
        w.sized16be(sha256(concat(...values)));
        const attest = w.finish();
        const sig = new ByteWriter().u16be(0x0014).u16be(0x000b).sized16be(new Uint8Array(256).fill(7)).finish();
        return sessionFrame(new ByteWriter().sized16be(attest).bytes(sig).finish());
      }
      case TPM_CC.PCR_Read: {
        const bm = cmd.subarray(17, 20);
        const want = Array.from({ length: 24 }, (_, i) => i)
          .filter((i) => bm[i >> 3]! & (1 << (i & 7)))
          .slice(0, 8);
        const values = s.pcrsAtRead(reads);
        if (++readChunk === 3) ((readChunk = 0), reads++);
        const bitmap = new Uint8Array(3);
        for (const p of want) bitmap[p >> 3]! |= 1 << (p & 7);
        const w = new ByteWriter().u32be(1).u32be(1).u16be(0x000b).u8(3).bytes(bitmap).u32be(want.length);
        for (const p of want) w.sized16be(values[p]!);
        return frame(0, w.finish());
      }
      case TPM_CC.FlushContext:
        flushed.push(new DataView(cmd.buffer, cmd.byteOffset).getUint32(10));
        return frame(0);
      default:
        return frame(0x143);
    }
  });
  return { t, flushed, quotes: () => quotes };
}

const pcrSet = (seed: number) => Array.from({ length: 24 }, (_, i) => sha256(Uint8Array.from([seed, i])));
const digest = sha256(new Uint8Array([1])).subarray(0, 32);
const tpmOf = (t: FakeTransport) => new Tpm(t, new Deadline(10_000), silentLogger);

describe("collectTpmEvidence with a scripted TPM", () => {
  it("re-quotes once when a PCR moved between the quote and the PCR read", async () => {
    const s = scriptedTpm({ pcrsAtQuote: (n) => pcrSet(n === 0 ? 1 : 2), pcrsAtRead: () => pcrSet(2) });
    const r = await collectTpmEvidence(tpmOf(s.t), digest, 0x81010002);
    expect(s.quotes()).toBe(2);
    expect(r.evidence.tpm_quote.pcrs[0]).toBe(Buffer.from(pcrSet(2)[0]!).toString("hex"));
    expect(decodeQuoteAttest(fromB64(r.evidence.tpm_quote.message)).extraData).toEqual(digest);
    expect(s.flushed).toEqual([0x80ffffff]);
  });

  it("gives up after 3 quotes if the PCRs never settle, and still flushes the AK", async () => {
    const s = scriptedTpm({ pcrsAtQuote: (n) => pcrSet(10 + n), pcrsAtRead: (n) => pcrSet(100 + n) });
    await expect(collectTpmEvidence(tpmOf(s.t), digest, 0x81010002)).rejects.toThrow(
      /PCRs kept changing between TPM2_Quote and TPM2_PCR_Read \(3 attempts\)/,
    );
    expect(s.flushed).toEqual([0x80ffffff]);
  });

  it("refuses a quote over other qualifying data or another PCR selection", async () => {
    const wrongNonce = scriptedTpm({
      pcrsAtQuote: () => pcrSet(1),
      pcrsAtRead: () => pcrSet(1),
      extraData: () => new Uint8Array(32),
    });
    await expect(collectTpmEvidence(tpmOf(wrongNonce.t), digest, 0x81010002)).rejects.toThrow(/extraData differs/);
    const wrongSel = scriptedTpm({
      pcrsAtQuote: () => pcrSet(1),
      pcrsAtRead: () => pcrSet(1),
      selectionBitmap: [0xff, 0xff, 0x7f],
    });
    await expect(collectTpmEvidence(tpmOf(wrongSel.t), digest, 0x81010002)).rejects.toThrow(
      /PCR selection other than the sha256:0-23/,
    );
  });

  it("uses a suitable persistent AK without creating or flushing anything", async () => {
    const s = scriptedTpm({ persistent: rsaPublic(), pcrsAtQuote: () => pcrSet(1), pcrsAtRead: () => pcrSet(1) });
    const r = await collectTpmEvidence(tpmOf(s.t), digest, 0x81010002);
    expect(r.akOrigin).toBe("persistent");
    expect(s.t.sent.some((c) => commandCode(c) === TPM_CC.CreatePrimary)).toBe(false);
    expect(s.flushed).toEqual([]);
  });

  it("falls back to the derived AK when the persistent handle holds an ECC key", async () => {
    const s = scriptedTpm({ persistent: ECC_PUB, pcrsAtQuote: () => pcrSet(1), pcrsAtRead: () => pcrSet(1) });
    const r = await collectTpmEvidence(tpmOf(s.t), digest, 0x81010002);
    expect(r.akOrigin).toBe("derived");
    expect(s.flushed).toEqual([0x80ffffff]);
  });
});
