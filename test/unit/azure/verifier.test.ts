// The test KBS's az-snp-vtpm / az-tdx-vtpm verifiers against real Azure evidence (trustee's own
// fixtures, nonce "challenge"), plus the evidence encoder's exact JSON shape.
import * as crypto from "node:crypto";
import { describe, expect, it } from "vitest";
import { snpEvidence, tdxEvidence } from "../../../platform/azure/evidence.ts";
import { parseHclReport } from "../../../platform/azure/hcl.ts";
import { certificatesFromPem } from "../../../platform/util/pem.ts";
import { decodeQuoteAttest } from "../../../platform/tpm/structures.ts";
import { b64urlPadded, utf8 } from "../../../platform/util/bytes.ts";
import { verifier as snpVerifier, legacyVerifier as snpLegacy } from "../../kbs/verifiers/az-snp-vtpm.ts";
import { verifier as tdxVerifier } from "../../kbs/verifiers/az-tdx-vtpm.ts";
import { loadVerifier } from "../../kbs/verifiers/index.ts";
import { decodeKinvolkQuote, fixture, fixtureText } from "./fixtures.ts";
import { prng, type Prng } from "../../helpers/prng.ts";

const NONCE = utf8("challenge");
const ctx = { tee: "az-snp-vtpm", initData: null, nonce: "n" };

function snpVectorEvidence(version = 1): Record<string, unknown> {
  const quote = decodeKinvolkQuote(fixture("trustee-az-snp-vtpm/quote.bin"));
  const [vcek] = certificatesFromPem(fixtureText("trustee-az-snp-vtpm/vcek.pem"), "vcek.pem");
  return { ...snpEvidence(quote, fixture("trustee-az-snp-vtpm/hcl-report.bin"), vcek!), version };
}
function tdxVectorEvidence(version = 1): Record<string, unknown> {
  const quote = decodeKinvolkQuote(fixture("trustee-az-tdx-vtpm/quote.bin"));
  return {
    ...tdxEvidence(quote, fixture("trustee-az-tdx-vtpm/hcl-report.bin"), fixture("trustee-az-tdx-vtpm/td-quote.bin")),
    version,
  };
}
function hexFlipAt(h: string, rng: Prng): string {
  const at = rng.int(0, h.length - 1);
  const c = "0123456789abcdef"[(parseInt(h[at]!, 16) + rng.int(1, 15)) % 16]!;
  return h.slice(0, at) + c + h.slice(at + 1);
}
function flipIn(b: Buffer, from: number, to: number, rng: Prng): Buffer {
  const c = Buffer.from(b);
  const at = rng.int(from, to - 1);
  c[at] = c[at]! ^ rng.int(1, 255);
  return c;
}
const hexFlip = (h: string, at: number) => h.slice(0, at) + (h[at] === "0" ? "1" : "0") + h.slice(at + 1);

describe("real Azure vTPM quotes", () => {
  for (const dir of ["trustee-az-snp-vtpm", "trustee-az-tdx-vtpm"]) {
    it(`${dir}/quote.bin verifies with HCLAkPub of the sibling HCL report; nonce "challenge"; pcrDigest`, () => {
      const q = decodeKinvolkQuote(fixture(`${dir}/quote.bin`));
      const ak = parseHclReport(fixture(`${dir}/hcl-report.bin`)).akPub!;
      const key = crypto.createPublicKey({ key: { kty: "RSA", n: ak.n, e: ak.e }, format: "jwk" });
      expect(crypto.verify("sha256", q.message, key, q.signature)).toBe(true);
      const attest = decodeQuoteAttest(q.message);
      expect(Buffer.from(attest.extraData).toString()).toBe("challenge");
      expect(attest.pcrSelect).toEqual([{ hash: 0x000b, pcrs: Array.from({ length: 24 }, (_, i) => i) }]);
      expect(Buffer.from(attest.pcrDigest)).toEqual(crypto.createHash("sha256").update(Buffer.concat(q.pcrs)).digest());
      const other = parseHclReport(
        fixture(dir.includes("snp") ? "trustee-az-tdx-vtpm/hcl-report.bin" : "trustee-az-snp-vtpm/hcl-report.bin"),
      ).akPub!;
      expect(
        crypto.verify(
          "sha256",
          q.message,
          crypto.createPublicKey({ key: { kty: "RSA", n: other.n, e: other.e }, format: "jwk" }),
          q.signature,
        ),
      ).toBe(false);
    });
  }

  it("kinvolk quote.bin verifies with kinvolk akpub.pem", () => {
    const q = decodeKinvolkQuote(fixture("kinvolk/quote.bin"));
    expect(
      crypto.verify("sha256", q.message, crypto.createPublicKey(fixtureText("kinvolk/akpub.pem")), q.signature),
    ).toBe(true);
  });
});

describe("evidence encoder", () => {
  it("emits trustee's v2 JSON: hex quote, raw signature, URL-safe padded base64 blobs", () => {
    const quote = {
      signature: new Uint8Array([0xde, 0xad]),
      message: new Uint8Array([0xbe, 0xef]),
      pcrs: [new Uint8Array(32).fill(1)],
    };
    const e = snpEvidence(quote, new Uint8Array([0xde, 0xad, 0xbe, 0xef]), new Uint8Array([0xfb, 0xff]));
    expect(JSON.stringify(e)).toBe(
      `{"version":2,"tpm_quote":{"signature":"dead","message":"beef","pcrs":["${"01".repeat(32)}"]},"hcl_report":"3q2-7w==","vcek":"-_8="}`,
    );
    const t = tdxEvidence(quote, new Uint8Array([1]), new Uint8Array([2, 3]));
    expect(Object.keys(t)).toEqual(["version", "tpm_quote", "hcl_report", "td_quote"]);
    expect(t.td_quote).toBe("AgM=");
  });
});

describe("az-snp-vtpm verifier on trustee's real SNP CVM evidence", () => {
  it("accepts v1 evidence: quote, nonce, PCRs, REPORT_DATA binding, VMPL 0, VCEK signature and Milan chain", async () => {
    const claims = await snpVerifier.verify(snpVectorEvidence(1), NONCE, ctx);
    expect(claims.report_data).toBe(Buffer.from("challenge").toString("hex"));
    expect(claims.pcr23).toMatch(/^[0-9a-f]{64}$/);
    expect(claims.measurement).toMatch(/^[0-9a-f]{96}$/);
  });

  it("v2 evidence additionally requires user-data to carry the digest (the vector's user-data is zeros)", () => {
    expect(() => snpVerifier.verify(snpVectorEvidence(2), NONCE, ctx)).toThrow(/user-data/);
  });

  it.each([
    ["wrong expected report data", (e: any) => e, utf8("challengf"), /nonce/],
    [
      "flipped signature",
      (e: any) => ({ ...e, tpm_quote: { ...e.tpm_quote, signature: hexFlip(e.tpm_quote.signature, 10) } }),
      NONCE,
      /signature/,
    ],
    [
      "changed PCR",
      (e: any) => ({
        ...e,
        tpm_quote: {
          ...e.tpm_quote,
          pcrs: e.tpm_quote.pcrs.map((p: string, i: number) => (i === 5 ? hexFlip(p, 0) : p)),
        },
      }),
      NONCE,
      /PCRs/,
    ],
    [
      "dropped PCR",
      (e: any) => ({ ...e, tpm_quote: { ...e.tpm_quote, pcrs: e.tpm_quote.pcrs.slice(1) } }),
      NONCE,
      /PCRs/,
    ],
    ["unpadded base64", (e: any) => ({ ...e, vcek: e.vcek.replace(/=+$/, "") }), NONCE, /padding/],
    [
      "standard (non-URL) base64",
      (e: any) => ({ ...e, hcl_report: Buffer.from(e.hcl_report, "base64url").toString("base64") }),
      NONCE,
      /URL-safe/,
    ],
    [
      "signature as base64",
      (e: any) => ({
        ...e,
        tpm_quote: { ...e.tpm_quote, signature: Buffer.from(e.tpm_quote.signature, "hex").toString("base64") },
      }),
      NONCE,
      /hex/,
    ],
    ["version 3", (e: any) => ({ ...e, version: 3 }), NONCE, /version/],
    ["version as string", (e: any) => ({ ...e, version: "2" }), NONCE, /version/],
    [
      "ASK offered as VCEK",
      (e: any) => ({
        ...e,
        vcek: b64urlPadded(certificatesFromPem(fixtureText("trustee-az-snp-vtpm/vcek.pem"), "x")[1]!),
      }),
      NONCE,
      /does not chain/,
    ],
  ])("rejects %s", (_name, mutate, expected, msg) => {
    const ev = mutate(snpVectorEvidence(1));
    expect(() => snpVerifier.verify(ev, expected, ctx)).toThrow(msg);
  });

  it("rejects an HCL report whose runtime claims were edited (binding to the SNP report breaks)", () => {
    const ev = snpVectorEvidence(1);
    const hcl = Buffer.from(ev.hcl_report as string, "base64url");
    const at = hcl.indexOf("vmUniqueId") + 14;
    hcl[at] = hcl[at] === 0x41 ? 0x42 : 0x41;
    ev.hcl_report = b64urlPadded(hcl);
    expect(() => snpVerifier.verify(ev, NONCE, ctx)).toThrow(/SHA-256\(HCL runtime claims\)/);
  });

  it("any single-byte change in a covered region is rejected (seeded)", () => {
    const seed = 0x5eed_a2;
    const rng = prng(seed);
    const base = snpVectorEvidence(1) as any;
    const hcl = Buffer.from(base.hcl_report, "base64url");
    const regions: [string, (e: any) => void][] = [
      ["tpm_quote.message", (e) => (e.tpm_quote.message = hexFlipAt(e.tpm_quote.message, rng))],
      ["tpm_quote.signature", (e) => (e.tpm_quote.signature = hexFlipAt(e.tpm_quote.signature, rng))],
      [
        "tpm_quote.pcrs",
        (e) => {
          const k = rng.int(0, 23);
          e.tpm_quote.pcrs[k] = hexFlipAt(e.tpm_quote.pcrs[k], rng);
        },
      ],
      [
        "SNP report (signed part and signature)",
        (e) => (e.hcl_report = b64urlPadded(flipIn(hcl, 0x20, 0x20 + 0x330, rng))),
      ],
      ["runtime claims", (e) => (e.hcl_report = b64urlPadded(flipIn(hcl, 0x4d4, 0x4d4 + 1110, rng)))],
    ];
    for (let i = 0; i < 150; i++) {
      const [name, mutate] = regions[i % regions.length]!;
      const ev = structuredClone(base);
      mutate(ev);
      expect(() => snpVerifier.verify(ev, NONCE, ctx), `seed ${seed} case ${i} (${name})`).toThrow();
    }
  });

  it("registry serves both tee spellings", async () => {
    expect((await loadVerifier("az-snp-vtpm"))?.tee).toBe("az-snp-vtpm");
    expect((await loadVerifier("azsnpvtpm"))?.tee).toBe("azsnpvtpm");
    expect((await loadVerifier("aztdxvtpm"))?.tee).toBe("aztdxvtpm");
    expect(snpLegacy.tee).toBe("azsnpvtpm");
  });
});

describe("az-tdx-vtpm verifier on trustee's real TDX CVM evidence", () => {
  it("accepts v1 evidence: quote, PCRs, TD quote signature, REPORTDATA binding to the runtime claims", async () => {
    const claims = await tdxVerifier.verify(tdxVectorEvidence(1), NONCE, { ...ctx, tee: "az-tdx-vtpm" });
    expect(claims.mr_td).toMatch(/^[0-9a-f]{96}$/);
  });

  it("rejects a TD quote for another report, and a TD quote with a broken signature", () => {
    const ev = tdxVectorEvidence(1);
    const other = { ...ev, hcl_report: snpVectorEvidence(1).hcl_report };
    expect(() => tdxVerifier.verify(other, NONCE, { ...ctx, tee: "az-tdx-vtpm" })).toThrow(
      /signature does not verify with HCLAkPub/,
    );
    const q = Buffer.from(fixture("trustee-az-tdx-vtpm/td-quote.bin"));
    q[0x40] = q[0x40]! ^ 1; // a body byte under the signature
    const bad = { ...ev, td_quote: b64urlPadded(q) };
    expect(() => tdxVerifier.verify(bad, NONCE, { ...ctx, tee: "az-tdx-vtpm" })).toThrow(/signature/);
  });
});
