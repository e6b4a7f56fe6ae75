// Our encoders reproduce the exact command bytes libtpms accepted, and our decoders parse its
// responses (test/fixtures/tpm/transcript_raw.json, generated with swtpm 0.7.1).
import * as fs from "node:fs";
import { describe, expect, it } from "vitest";
import { fromHex, hex } from "../../../platform/util/bytes.ts";
import { TPM_ALG, TPM_CAP, TPM_RH } from "../../../platform/tpm/constants.ts";
import { TpmError, TPM_RC } from "../../../platform/tpm/rc.ts";
import { decodeGetCapability, encodeGetCapability } from "../../../platform/tpm/commands/capability.ts";
import { decodePcrExtend, decodePcrRead, encodePcrExtend, encodePcrRead } from "../../../platform/tpm/commands/pcr.ts";
import {
  decodeCreatePrimary,
  decodeFlushContext,
  decodeReadPublic,
  encodeCreatePrimary,
  encodeFlushContext,
  encodeReadPublic,
} from "../../../platform/tpm/commands/object.ts";
import { decodeQuote, encodeQuote } from "../../../platform/tpm/commands/quote.ts";
import {
  decodeNvRead,
  decodeNvReadPublic,
  encodeNvRead,
  encodeNvReadPublic,
} from "../../../platform/tpm/commands/nv.ts";
import { AK_RSA_TEMPLATE } from "../../../platform/tpm/attestation/ak.ts";
import { decodePublic } from "../../../platform/tpm/structures.ts";

interface Entry {
  name: string;
  cmd: string;
  rsp: string;
  rc: string;
}
const transcript: Entry[] = JSON.parse(
  fs.readFileSync(new URL("../../fixtures/tpm/transcript_raw.json", import.meta.url), "utf8"),
);
const find = (prefix: string, n = 0) => transcript.filter((e) => e.name.startsWith(prefix))[n]!;
const rsp = (e: Entry) => fromHex(e.rsp);

describe("GetCapability", () => {
  it("encodes the properties query and decodes the properties page", () => {
    const e = find("GetCapability(TPM_CAP_TPM_PROPERTIES");
    expect(hex(encodeGetCapability(TPM_CAP.TPM_PROPERTIES, 0x100, 64))).toBe(e.cmd);
    const r = decodeGetCapability(rsp(e), TPM_CAP.TPM_PROPERTIES);
    if (r.data.capability !== TPM_CAP.TPM_PROPERTIES) throw new Error("wrong capability");
    expect(r.data.properties.find((p) => p.property === 0x105)?.value).toBe(0x49424d00);
    expect(r.data.properties.find((p) => p.property === 0x12c)?.value).toBe(0x400);
  });

  it("decodes allocated banks and handle lists", () => {
    const pcrs = decodeGetCapability(rsp(find("GetCapability(TPM_CAP_PCRS")), TPM_CAP.PCRS);
    expect(pcrs.data).toEqual({
      capability: 5,
      banks: [
        { hash: TPM_ALG.SHA1, pcrs: Array.from({ length: 24 }, (_, i) => i) },
        { hash: TPM_ALG.SHA256, pcrs: Array.from({ length: 24 }, (_, i) => i) },
        { hash: TPM_ALG.SHA384, pcrs: Array.from({ length: 24 }, (_, i) => i) },
        { hash: TPM_ALG.SHA512, pcrs: [] },
      ],
    });
    const nv = decodeGetCapability(rsp(find("GetCapability(TPM_CAP_HANDLES=1, NV")), TPM_CAP.HANDLES);
    expect(nv.data).toEqual({ capability: 1, handles: [0x01c00002, 0x01c00016, 0x01c08000] });
  });

  it("rejects an answer for another capability", () => {
    expect(() => decodeGetCapability(rsp(find("GetCapability(TPM_CAP_PCRS")), TPM_CAP.HANDLES)).toThrow(
      /asked for capability 1, TPM answered 5/,
    );
  });
});

describe("PCR_Read / PCR_Extend", () => {
  it("encodes selections bit-exactly (PCR0-7 = ff0000, PCR16 = 000001, two banks)", () => {
    expect(hex(encodePcrRead([{ hash: TPM_ALG.SHA256, pcrs: [0, 1, 2, 3, 4, 5, 6, 7] }]))).toBe(
      find("PCR_Read(SHA256 bank, PCR0-7)").cmd,
    );
    expect(
      hex(
        encodePcrRead([
          { hash: TPM_ALG.SHA1, pcrs: [0] },
          { hash: TPM_ALG.SHA384, pcrs: [0] },
        ]),
      ),
    ).toBe(find("PCR_Read(SHA1 PCR0 + SHA384").cmd);
    expect(hex(encodePcrRead([{ hash: TPM_ALG.SHA256, pcrs: [0, 1, 2, 3, 4, 5, 6, 7, 16] }]))).toBe(
      find("PCR_Read(SHA256, [0, 1").cmd,
    );
  });

  it("decodes a truncated (8-digest) answer and the PCR16 value", () => {
    const r = decodePcrRead(rsp(find("PCR_Read(SHA256, [0, 1")));
    expect(r.selection).toEqual([{ hash: TPM_ALG.SHA256, pcrs: [0, 1, 2, 3, 4, 5, 6, 7] }]);
    expect(r.digests).toHaveLength(8);
    const r16 = decodePcrRead(rsp(find("PCR_Read(SHA256, PCR16) after extend")));
    expect(hex(r16.digests[0]!)).toBe("9851312028952521510e8eaab5be94e7dc24b5fc292b2e9781173cf11ffa9878");
  });

  it("encodes PCR_Extend with a password session and decodes its answer", () => {
    const e = find("PCR_Extend(PCR16");
    const d = fromHex("2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824");
    expect(hex(encodePcrExtend(16, [{ hashAlg: TPM_ALG.SHA256, digest: d }]))).toBe(e.cmd);
    expect(() => decodePcrExtend(rsp(e))).not.toThrow();
  });

  it("refuses a digest of the wrong size for its bank", () => {
    expect(() => encodePcrExtend(15, [{ hashAlg: TPM_ALG.SHA256, digest: new Uint8Array(20) }])).toThrow(
      /20-byte digest for bank sha256/,
    );
  });
});

describe("objects", () => {
  it("the AK template is go-tpm-tools' AKTemplateRSA and CreatePrimary encodes like the transcript (owner)", () => {
    expect(hex(AK_RSA_TEMPLATE)).toBe("0001000b00050072000000100014000b0800000000000000");
    const e = find("CreatePrimary(TPM_RH_OWNER, restricted signing RSA2048 AK");
    expect(hex(encodeCreatePrimary(TPM_RH.OWNER, AK_RSA_TEMPLATE))).toBe(e.cmd);
    const r = decodeCreatePrimary(rsp(e));
    expect(r.handle).toBe(0x80000000);
    expect(r.publicArea.type).toBe(TPM_ALG.RSA);
    if (r.publicArea.type === TPM_ALG.RSA) expect(r.publicArea.unique).toHaveLength(256);
    expect(hex(r.name).slice(0, 4)).toBe("000b");
  });

  it("the EK L-1 CreatePrimary round-trips its template", () => {
    const e = find("CreatePrimary(TPM_RH_ENDORSEMENT, TCG EK template L-1");
    const template = fromHex(e.cmd).subarray(10 + 4 + 4 + 9 + 6 + 2, 10 + 4 + 4 + 9 + 6 + 2 + 314);
    expect(hex(encodeCreatePrimary(TPM_RH.ENDORSEMENT, template))).toBe(e.cmd);
    expect(decodePublic(template)).toMatchObject({ type: TPM_ALG.RSA, attributes: 0x000300b2 });
    expect(decodeCreatePrimary(rsp(e)).publicArea).toMatchObject({ type: TPM_ALG.RSA, rsa: { keyBits: 2048 } });
  });

  it("ReadPublic and FlushContext", () => {
    const e = find("ReadPublic(RSA AK)");
    expect(hex(encodeReadPublic(0x80000000))).toBe(e.cmd);
    expect(decodeReadPublic(rsp(e)).publicArea).toMatchObject({ type: TPM_ALG.RSA, attributes: 0x00050072 });
    expect(hex(encodeFlushContext(0x80000000))).toBe(find("FlushContext(RSA AK)").cmd);
    expect(() => decodeFlushContext(rsp(find("FlushContext(RSA AK)")))).not.toThrow();
    const err = (() => {
      try {
        decodeFlushContext(rsp(find("FlushContext(0x80000000) when no object loaded")));
      } catch (x) {
        return x as TpmError;
      }
    })();
    expect(err).toBeInstanceOf(TpmError);
    expect(err!.decoded).toMatchObject({ code: TPM_RC.HANDLE, parameter: 1 });
  });
});

describe("Quote", () => {
  it("encodes an explicit-scheme quote and decodes attest + signature, keeping the signed bytes", () => {
    const e = find("Quote(RSA AK");
    const nonce = fromHex("3c2ca1b5068a8a95ed9b5f5466f1c6c617c64f20d155cd96ea97384c4689d3ba");
    const cmd = encodeQuote({
      signHandle: 0x80000000,
      qualifyingData: nonce,
      scheme: { scheme: TPM_ALG.RSASSA, hashAlg: TPM_ALG.SHA256 },
      selection: [{ hash: TPM_ALG.SHA256, pcrs: [0, 16] }],
    });
    expect(hex(cmd)).toBe(e.cmd);
    const q = decodeQuote(rsp(e));
    expect(q.attest.pcrSelect).toEqual([{ hash: TPM_ALG.SHA256, pcrs: [0, 16] }]);
    expect(hex(q.attest.extraData)).toBe(hex(nonce));
    expect(hex(q.signatureBytes.subarray(0, 6))).toBe("0014000b0100");
    expect(q.signatureBytes).toHaveLength(6 + 256);
    expect(hex(q.message.subarray(0, 6))).toBe("ff5443478018");
  });

  it("NULL scheme ECC quote (after the RETRY) decodes an ECDSA signature", () => {
    const ok = find("Quote(ECC AK", 1);
    const q = decodeQuote(rsp(ok));
    expect(q.signature).toMatchObject({ sigAlg: TPM_ALG.ECDSA, hashAlg: TPM_ALG.SHA256 });
    const retry = find("Quote(ECC AK", 0);
    expect(() => decodeQuote(rsp(retry))).toThrow(/TPM_RC_RETRY/);
  });
});

describe("NV", () => {
  it("NV_ReadPublic of the EK certificate index", () => {
    const e = find("NV_ReadPublic(0x01C00002");
    expect(hex(encodeNvReadPublic(0x01c00002))).toBe(e.cmd);
    expect(decodeNvReadPublic(rsp(e)).nvPublic).toEqual({
      nvIndex: 0x01c00002,
      nameAlg: TPM_ALG.SHA256,
      attributes: 0x62072801,
      authPolicy: new Uint8Array(0),
      dataSize: 1016,
    });
  });

  it("NV_Read with the index as its own auth, checking the returned size", () => {
    const e = find("NV_Read(authHandle=nvIndex");
    expect(hex(encodeNvRead(0x01c00002, 0x01c00002, 1016, 0))).toBe(e.cmd);
    const data = decodeNvRead(rsp(e), 1016);
    expect(hex(data)).toBe(
      hex(fs.readFileSync(new URL("../../fixtures/tpm/ekcert_rsa_0x01c00002.der", import.meta.url))),
    );
    expect(() => decodeNvRead(rsp(e), 1000)).toThrow(/asked for 1000 bytes, TPM returned 1016/);
  });

  it("absent index and oversized read are decoded as handle / parameter errors", () => {
    expect(() => decodeNvReadPublic(rsp(find("NV_ReadPublic(0x01C0000A)")))).toThrow(/TPM_RC_HANDLE \(handle 1\)/);
    expect(() => decodeNvRead(rsp(find("NV_Read size 0x401")), 0x401)).toThrow(/TPM_RC_VALUE \(parameter 1\)/);
  });
});
