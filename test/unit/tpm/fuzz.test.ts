// Property tests over every unmarshaller: random, truncated and bit-flipped bytes (seeded from
// real libtpms responses) must only ever produce a result or a CvmError (ParseError / TpmError),
// never RangeError/TypeError or a hang.
import * as fs from "node:fs";
import { describe, expect, it } from "vitest";
import { CvmError, ParseError } from "../../../platform/util/errors.ts";
import { fromHex } from "../../../platform/util/bytes.ts";
import { TPM_CAP } from "../../../platform/tpm/constants.ts";
import { parseResponseHeader, responseFrameSize } from "../../../platform/tpm/marshal.ts";
import { decodeGetCapability } from "../../../platform/tpm/commands/capability.ts";
import { decodePcrExtend, decodePcrRead } from "../../../platform/tpm/commands/pcr.ts";
import {
  decodeCreatePrimary,
  decodeEvictControl,
  decodeFlushContext,
  decodeReadPublic,
} from "../../../platform/tpm/commands/object.ts";
import { decodeQuote } from "../../../platform/tpm/commands/quote.ts";
import { decodeNoParams, decodeNvRead, decodeNvReadPublic } from "../../../platform/tpm/commands/nv.ts";
import { decodePublic, decodeQuoteAttest, decodeSignature } from "../../../platform/tpm/structures.ts";
import { prng, type Prng } from "../../helpers/prng.ts";

interface Entry {
  name: string;
  rsp: string;
}
const transcript: Entry[] = JSON.parse(
  fs.readFileSync(new URL("../../fixtures/tpm/transcript_raw.json", import.meta.url), "utf8"),
);
const seedOf = (prefix: string) =>
  fromHex(transcript.find((e) => e.name.startsWith(prefix) && !e.rsp.endsWith("0922"))!.rsp);
const quoteJson = JSON.parse(fs.readFileSync(new URL("../../fixtures/tpm/quote_rsa_ak.json", import.meta.url), "utf8"));

const decoders: { name: string; seed: Uint8Array; decode: (b: Uint8Array) => unknown }[] = [
  {
    name: "GetCapability(properties)",
    seed: seedOf("GetCapability(TPM_CAP_TPM_PROPERTIES"),
    decode: (b) => decodeGetCapability(b, TPM_CAP.TPM_PROPERTIES),
  },
  {
    name: "GetCapability(pcrs)",
    seed: seedOf("GetCapability(TPM_CAP_PCRS"),
    decode: (b) => decodeGetCapability(b, TPM_CAP.PCRS),
  },
  {
    name: "GetCapability(handles)",
    seed: seedOf("GetCapability(TPM_CAP_HANDLES=1, NV"),
    decode: (b) => decodeGetCapability(b, TPM_CAP.HANDLES),
  },
  { name: "PCR_Read", seed: seedOf("PCR_Read(SHA1 PCR0 + SHA384"), decode: decodePcrRead },
  { name: "PCR_Extend", seed: seedOf("PCR_Extend"), decode: decodePcrExtend },
  {
    name: "CreatePrimary",
    seed: seedOf("CreatePrimary(TPM_RH_OWNER, restricted signing ECC"),
    decode: decodeCreatePrimary,
  },
  { name: "ReadPublic", seed: seedOf("ReadPublic(RSA AK)"), decode: decodeReadPublic },
  { name: "FlushContext", seed: seedOf("FlushContext(RSA AK)"), decode: decodeFlushContext },
  { name: "EvictControl", seed: seedOf("PCR_Extend"), decode: decodeEvictControl },
  { name: "Quote", seed: seedOf("Quote(ECC AK"), decode: decodeQuote },
  { name: "NV_ReadPublic", seed: seedOf("NV_ReadPublic(0x01C00002"), decode: decodeNvReadPublic },
  { name: "NV_Read", seed: seedOf("NV_Read(authHandle"), decode: (b) => decodeNvRead(b, 1016) },
  { name: "NV_Write/Define", seed: seedOf("PCR_Extend"), decode: (b) => decodeNoParams("NV_Write", b) },
  { name: "response header", seed: seedOf("FlushContext(RSA AK)"), decode: (b) => parseResponseHeader(b) },
  { name: "frame size", seed: seedOf("FlushContext(RSA AK)"), decode: (b) => responseFrameSize(b) },
  { name: "TPMT_PUBLIC", seed: fromHex(quoteJson.ak_public_TPMT_PUBLIC), decode: decodePublic },
  { name: "TPMT_SIGNATURE", seed: fromHex(quoteJson.signature_TPMT_SIGNATURE), decode: decodeSignature },
  { name: "TPMS_ATTEST", seed: fromHex(quoteJson.attest_TPMS_ATTEST), decode: decodeQuoteAttest },
];

const HEADER_FIELDS = new Set(["tag", "responseSize", "responseCode"]);

/** Keep a response's size field consistent with its length so mutations reach the body parser. */
function fixSize(b: Uint8Array, isFrame: boolean): Uint8Array {
  if (isFrame && b.length >= 6) new DataView(b.buffer, b.byteOffset).setUint32(2, b.length);
  return b;
}

function mutate(r: Prng, seed: Uint8Array, isFrame: boolean): Uint8Array {
  switch (r.int(0, 4)) {
    case 0:
      return r.bytes(r.int(0, 64));
    case 1:
      return fixSize(seed.slice(0, r.int(0, seed.length)), isFrame);
    case 2: {
      const b = seed.slice();
      for (let i = r.int(1, 4); i > 0; i--) {
        const at = r.int(isFrame ? 10 : 0, Math.max(0, b.length - 1));
        if (at < b.length) b[at]! ^= 1 << r.int(0, 7);
      }
      return b;
    }
    case 3: {
      // overwrite a random u16/u32 with a large value (sizes and counts)
      const b = seed.slice();
      const at = r.int(isFrame ? 10 : 0, Math.max(0, b.length - 4));
      if (at + 4 <= b.length)
        new DataView(b.buffer).setUint32(at, r.pick([0xffffffff, 0x0000ffff, 0x00000100, 0x7fffffff, 0x00001000]));
      return b;
    }
    default:
      return fixSize(Uint8Array.from([...seed, ...r.bytes(r.int(1, 16))]), isFrame);
  }
}

describe("unmarshallers never throw anything but CvmError", () => {
  const seed = Number(process.env.TPM_FUZZ_SEED ?? 0x7e57);
  for (const d of decoders) {
    it(`${d.name} (seed ${seed})`, () => {
      const r = prng(seed ^ (d.name.length * 7919));
      const isFrame = !["TPMT_PUBLIC", "TPMT_SIGNATURE", "TPMS_ATTEST"].includes(d.name);
      expect(() => d.decode(d.seed)).not.toThrow(TypeError);
      let rejected = 0;
      // Inputs that got past the 10-byte envelope: accepted, or refused by the body decoder.
      let reachedBody = 0;
      for (let i = 0; i < 1500; i++) {
        const input = mutate(r, d.seed, isFrame);
        try {
          d.decode(input);
          reachedBody++;
        } catch (e) {
          if (!(e instanceof CvmError))
            throw new Error(
              `${d.name}: ${(e as Error).name} on input ${Buffer.from(input).toString("hex")}: ${(e as Error).message}`,
            );
          rejected++;
          if (e instanceof ParseError && !HEADER_FIELDS.has(e.field)) reachedBody++;
        }
      }
      expect(rejected).toBeGreaterThan(100);
      if (d.seed.length > 10) expect(reachedBody).toBeGreaterThan(100);
    });
  }
});
