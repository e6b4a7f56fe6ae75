// Real TPM quotes from other stacks decode with our structure codecs and verify.
import { createHash, createPublicKey, createVerify } from "node:crypto";
import * as fs from "node:fs";
import { describe, expect, it } from "vitest";
import { concat, fromB64, fromHex, hex } from "../../../platform/util/bytes.ts";
import { TPM_ALG } from "../../../platform/tpm/constants.ts";
import { decodePublic, decodeQuoteAttest, decodeSignature } from "../../../platform/tpm/structures.ts";
import { publicToSpkiDer, spkiPem } from "../../../platform/tpm/attestation/keys.ts";
import { derExtent, summariseCertificate } from "../../../platform/tpm/ekcert.ts";

const fixture = (name: string) => fs.readFileSync(new URL(`../../fixtures/tpm/${name}`, import.meta.url));

describe("go-attestation GCP Shielded VM (Windows) quote", () => {
  const d = JSON.parse(fixture("windows_gcp_shielded_vm.json").toString("utf8"));
  it("AK TPMT_PUBLIC → SPKI verifies the RSASSA-SHA1 quote; pcrDigest = SHA1(PCR0..23)", () => {
    const ak = decodePublic(fromB64(d.AK.Public));
    expect(ak).toMatchObject({ type: TPM_ALG.RSA, attributes: 0x00050472, rsa: { keyBits: 2048 } });
    const sig = decodeSignature(fromB64(d.Quote.Signature));
    expect(sig).toMatchObject({ sigAlg: TPM_ALG.RSASSA, hashAlg: TPM_ALG.SHA1 });
    const msg = fromB64(d.Quote.Quote);
    const spki = Buffer.from(publicToSpkiDer(ak));
    if (sig.sigAlg !== TPM_ALG.RSASSA) throw new Error("unreachable");
    expect(
      createVerify("sha1").update(msg).verify({ key: spki, format: "der", type: "spki" }, Buffer.from(sig.sig)),
    ).toBe(true);
    expect(createPublicKey(spkiPem(publicToSpkiDer(ak))).asymmetricKeyType).toBe("rsa");
    const attest = decodeQuoteAttest(msg);
    expect(attest.extraData).toHaveLength(0);
    expect(attest.pcrSelect).toEqual([{ hash: TPM_ALG.SHA1, pcrs: Array.from({ length: 24 }, (_, i) => i) }]);
    const pcrs = (d.Log.PCRs as { Index: number; Digest: string; DigestAlg: number }[])
      .filter((p) => p.DigestAlg === 3)
      .sort((a, b) => a.Index - b.Index);
    const digest = createHash("sha1")
      .update(concat(...pcrs.map((p) => fromB64(p.Digest))))
      .digest("hex");
    expect(hex(attest.pcrDigest)).toBe(digest);
    expect(digest).toBe("a610f27bc687ce906243287d832706036e79f6e1");
  });
});

describe("kinvolk Azure vTPM quote", () => {
  it("TPMS_ATTEST with nonce 'challenge', SHA-256 PCR0-23, verified with akpub.pem", () => {
    const b = fixture("../azure/kinvolk/quote.bin");
    let o = 0;
    const take = () => {
      const n = Number(b.readBigUInt64LE(o));
      const v = b.subarray(o + 8, o + 8 + n);
      o += 8 + n;
      return v;
    };
    const sig = take();
    const msg = take();
    const count = Number(b.readBigUInt64LE(o));
    const pcrs = Array.from({ length: count }, (_, i) => b.subarray(o + 8 + 32 * i, o + 8 + 32 * (i + 1)));
    const attest = decodeQuoteAttest(msg);
    expect(Buffer.from(attest.extraData).toString()).toBe("challenge");
    expect(attest.pcrSelect).toEqual([{ hash: TPM_ALG.SHA256, pcrs: Array.from({ length: 24 }, (_, i) => i) }]);
    expect(hex(attest.pcrDigest)).toBe(createHash("sha256").update(Buffer.concat(pcrs)).digest("hex"));
    expect(createVerify("sha256").update(msg).verify(fixture("../azure/kinvolk/akpub.pem").toString(), sig)).toBe(true);
  });
});

describe("swtpm-generated RSA AK quote", () => {
  it("decodes and verifies", () => {
    const d = JSON.parse(fixture("quote_rsa_ak.json").toString("utf8"));
    const ak = decodePublic(fromHex(d.ak_public_TPMT_PUBLIC));
    const sig = decodeSignature(fromHex(d.signature_TPMT_SIGNATURE));
    const msg = fromHex(d.attest_TPMS_ATTEST);
    const a = decodeQuoteAttest(msg);
    expect(a.clock).toBe(1434n);
    expect(a.safe).toBe(true);
    expect(a.firmwareVersion).toBe(0xebe4a9078355c55cn);
    if (sig.sigAlg !== TPM_ALG.RSASSA) throw new Error("expected RSASSA");
    expect(
      createVerify("sha256")
        .update(msg)
        .verify({ key: Buffer.from(publicToSpkiDer(ak)), format: "der", type: "spki" }, Buffer.from(sig.sig)),
    ).toBe(true);
  });

  it("the ECC AK converts to a P-256 SPKI", () => {
    const d = JSON.parse(fixture("quote_ecc_ak.json").toString("utf8"));
    const key = Object.entries(d).find(([k]) => k.startsWith("ak_public"))![1] as string;
    const spki = publicToSpkiDer(decodePublic(fromHex(key)));
    expect(
      createPublicKey({ key: Buffer.from(spki), format: "der", type: "spki" }).asymmetricKeyDetails?.namedCurve,
    ).toBe("prime256v1");
  });
});

describe("EK certificate summary", () => {
  it("summarises the swtpm RSA EK certificate and trims NV padding", () => {
    const der = new Uint8Array(fixture("ekcert_rsa_0x01c00002.der"));
    const padded = concat(der, new Uint8Array(64));
    expect(derExtent(padded)).toHaveLength(der.length);
    const s = summariseCertificate(0x01c00002, "RSA 2048 EK", padded);
    expect(s).toMatchObject({ subject: "CN=unknown", issuer: "CN=swtpm-localca", keyType: "rsa", size: der.length });
    expect(summariseCertificate(1, "x", new Uint8Array([0x30, 0x03, 1, 2, 3])).error).toMatch(/not a parseable X.509/);
  });
});
