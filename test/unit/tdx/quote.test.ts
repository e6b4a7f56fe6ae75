import * as fs from "node:fs";
import * as path from "node:path";
import { describe, expect, it } from "vitest";
import {
  decodeTdAttributes,
  encodeQeCertification,
  encodeSignatureData,
  encodeSignedPart,
  encodeTdxQuote,
  parseTdxQuote,
} from "../../../platform/tdx/quote.ts";
import { pckChainPem, verifyQeBinding, verifyQuoteSignature } from "../../../platform/tdx/signature.ts";
import { trusteeQuoteClaims } from "../../../platform/tdx/claims.ts";
import { ParseError } from "../../../platform/util/errors.ts";
import { hex } from "../../../platform/util/bytes.ts";

const DIR = path.join(import.meta.dirname, "../../fixtures/tdx");
const load = (n: string) => new Uint8Array(fs.readFileSync(path.join(DIR, n)));
const expected = JSON.parse(fs.readFileSync(path.join(DIR, "expected.json"), "utf8")).quotes as Record<
  string,
  {
    version: number;
    bodyType: number;
    total: number;
    signed: number;
    sigDataLen: number;
    trailing: number;
    teeTcbSvn: string;
    tdAttributes: string;
    xfam: string;
    mrTd: string;
    rtmrs: string[];
    reportDataPrefix: string;
  }
>;

describe("TDX quote codec on every real quote", () => {
  for (const [name, want] of Object.entries(expected)) {
    it(`${name}: v${want.version}, body type ${want.bodyType}, ${want.trailing} trailing bytes`, () => {
      const bytes = load(name);
      expect(bytes.length).toBe(want.total);
      const q = parseTdxQuote(bytes);
      expect(q.header.version).toBe(want.version);
      expect(q.bodyType).toBe(want.bodyType);
      expect(q.signedBytes.length).toBe(want.signed);
      expect(q.sigDataLen).toBe(want.sigDataLen);
      expect(q.trailing).toBe(want.trailing);
      expect(hex(q.header.qeVendorId)).toBe("939a7233f79c4ca9940a0db3957f0607");
      expect(hex(q.body.teeTcbSvn)).toBe(want.teeTcbSvn);
      expect(hex(q.body.tdAttributes)).toBe(want.tdAttributes);
      expect(hex(q.body.xfam)).toBe(want.xfam);
      expect(hex(q.body.mrTd)).toBe(want.mrTd);
      expect(q.body.rtmrs.map(hex)).toEqual(want.rtmrs);
      expect(hex(q.body.reportData)).toBe(want.reportDataPrefix);
      expect(q.body.teeTcbSvn2 !== undefined).toBe(want.bodyType === 3);
      // Round trip: re-encoding gives the exact quote (without trailing bytes).
      const again = encodeTdxQuote(
        encodeSignedPart(q.header, q.bodyType, q.body),
        encodeSignatureData(q.signatureData),
      );
      expect(hex(again)).toBe(hex(bytes.subarray(0, q.length)));
      expect(hex(encodeQeCertification(q.signatureData.qe!))).toBe(hex(q.signatureData.certData));
      // Offline signature checks hold on real quotes.
      expect(verifyQuoteSignature(q)).toBe(true);
      expect(verifyQeBinding(q)).toBe(true);
      expect(pckChainPem(q)).toHaveLength(3);
    });
  }

  it("claims for tdx_quote_4.dat equal trustee's parse_tdx_claims_expected.json", () => {
    const want = JSON.parse(fs.readFileSync(path.join(DIR, "parse_tdx_claims_expected.json"), "utf8"));
    const got = trusteeQuoteClaims(parseTdxQuote(load("tdx_quote_4.dat")));
    expect(got.quote).toEqual(want.quote);
    expect(got.report_data).toBe(want.report_data);
    expect(got.td_attributes).toEqual(want.td_attributes);
    expect(got.init_data).toBe(want.init_data);
  });

  it("decodes TD attributes", () => {
    expect(decodeTdAttributes(Uint8Array.from([1, 0, 0, 0x10, 0, 0, 0, 0]))).toMatchObject({
      debug: true,
      septVeDisable: true,
      perfmon: false,
    });
    expect(decodeTdAttributes(Uint8Array.from([0, 0, 0, 0xc0, 0, 0, 0, 0x80]))).toMatchObject({
      debug: false,
      protectionKeys: true,
      keyLocker: true,
      perfmon: true,
    });
  });

  it("a flipped body byte breaks the quote signature", () => {
    const b = load("tdx_quote_5.dat").slice();
    b[0x36 + 0x88] = b[0x36 + 0x88]! ^ 1; // MRTD
    expect(verifyQuoteSignature(parseTdxQuote(b))).toBe(false);
  });
});

describe("TDX quote codec: clear errors", () => {
  const err = (b: Uint8Array): ParseError => {
    try {
      parseTdxQuote(b);
    } catch (e) {
      expect(e).toBeInstanceOf(ParseError);
      return e as ParseError;
    }
    throw new Error("parsed");
  };
  it("truncated in the body names the field", () => {
    const e = err(load("tdx_quote_4.dat").subarray(0, 0x30 + 0x88 + 10));
    expect(e.field).toBe("body.mr_td");
    expect(e.offset).toBe(0x30 + 0x88);
  });
  it("truncated signature data says so", () => {
    const e = err(load("tdx_quote_4.dat").subarray(0, 1000));
    expect(e.field).toBe("signature_data_len");
    expect(e.message).toMatch(/truncated/);
  });
  it("SGX quotes and unknown versions are refused", () => {
    const b = load("tdx_quote_4.dat").slice();
    b[4] = 0;
    expect(err(b).message).toMatch(/SGX/);
    const v3 = load("tdx_quote_4.dat").slice();
    v3[0] = 3;
    expect(err(v3).field).toBe("header.version");
  });
  it("v5 body descriptor mismatches are refused", () => {
    const b = load("tdx_quote_5.dat").slice();
    b[0x32] = 0x48; // size 0x248 with type 3
    b[0x33] = 0x02;
    expect(err(b).field).toBe("body_descriptor.size");
    const t = load("tdx_quote_5.dat").slice();
    t[0x30] = 1;
    expect(err(t).message).toMatch(/SGX body/);
  });
  it("certification data size must fill the signature data", () => {
    const b = load("tdx_quote_4.dat").slice();
    const certSizeAt = 0x27c + 0x82;
    new DataView(b.buffer).setUint32(certSizeAt, 10, true);
    expect(err(b).field).toBe("signature_data.certification_data.size");
  });
});
