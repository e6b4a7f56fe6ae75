// The test KBS's tpm verifier: accepts what trustee accepts, rejects each thing trustee rejects.
import { createHash, createSign, generateKeyPairSync } from "node:crypto";
import * as fs from "node:fs";
import { describe, expect, it } from "vitest";
import { b64, concat } from "../../../platform/util/bytes.ts";
import { ByteWriter } from "../../../platform/util/reader.ts";
import { verifier, verifyTpmEvidence } from "../../kbs/verifiers/tpm.ts";

const sha256 = (b: Uint8Array) => new Uint8Array(createHash("sha256").update(b).digest());
const { publicKey, privateKey } = generateKeyPairSync("rsa", { modulusLength: 2048 });
const other = generateKeyPairSync("rsa", { modulusLength: 2048 }).publicKey;
const akDer = new Uint8Array(publicKey.export({ type: "spki", format: "der" }));
const digest48 = sha384("runtime");
function sha384(s: string) {
  return new Uint8Array(createHash("sha384").update(s).digest());
}

interface Opts {
  extraData?: Uint8Array;
  pcrs?: Uint8Array[];
  selection?: { hash: number; bitmap: number[] }[];
  magic?: number;
  sigAlg?: number;
  pcrDigest?: Uint8Array;
}

function makeEvidence(o: Opts = {}) {
  const pcrs = o.pcrs ?? Array.from({ length: 24 }, (_, i) => sha256(new Uint8Array([i])));
  const sel = o.selection ?? [{ hash: 0x000b, bitmap: [0xff, 0xff, 0xff] }];
  const w = new ByteWriter()
    .u32be(o.magic ?? 0xff544347)
    .u16be(0x8018)
    .sized16be(new Uint8Array(34))
    .sized16be(o.extraData ?? digest48.subarray(0, 32));
  w.u64be(123n).u32be(1).u32be(0).u8(1).u64be(0x2019102300163636n).u32be(sel.length);
  for (const s of sel) w.u16be(s.hash).u8(s.bitmap.length).bytes(Uint8Array.from(s.bitmap));
  w.sized16be(o.pcrDigest ?? sha256(concat(...pcrs)));
  const message = w.finish();
  const raw = new Uint8Array(createSign("sha256").update(message).sign(privateKey));
  const sig = new ByteWriter()
    .u16be(o.sigAlg ?? 0x0014)
    .u16be(0x000b)
    .sized16be(raw)
    .finish();
  return {
    ak_public: b64(akDer),
    tpm_quote: { signature: b64(sig), message: b64(message), pcrs: pcrs.map((p) => Buffer.from(p).toString("hex")) },
  };
}

describe("verifyTpmEvidence", () => {
  it("accepts good evidence and returns trustee's claims", () => {
    const c = verifyTpmEvidence(makeEvidence(), digest48);
    expect(c.report_data).toBe(Buffer.from(digest48.subarray(0, 32)).toString("hex"));
    expect(c.pcr00).toMatch(/^[0-9a-f]{64}$/);
    expect(c.pcr23).toBeDefined();
    expect(c.init_data).toBe(c.pcr08);
  });

  it("the trusted-AK list is enforced", () => {
    expect(() => verifyTpmEvidence(makeEvidence(), digest48, { trustedAks: [b64(akDer)] })).not.toThrow();
    expect(() =>
      verifyTpmEvidence(makeEvidence(), digest48, {
        trustedAks: [other.export({ type: "spki", format: "pem" }).toString()],
      }),
    ).toThrow(/not in the list of trusted keys/);
  });

  it.each<[string, () => unknown, RegExp]>([
    [
      "signature by another key",
      () => ({ ...makeEvidence(), ak_public: b64(new Uint8Array(other.export({ type: "spki", format: "der" }))) }),
      /signature verification failed/,
    ],
    [
      "tampered PCR value",
      () => {
        const e = makeEvidence();
        e.tpm_quote.pcrs[3] = "00".repeat(32);
        return e;
      },
      /digest of PCRs does not match/,
    ],
    [
      "missing PCRs",
      () => {
        const e = makeEvidence();
        e.tpm_quote.pcrs.pop();
        return e;
      },
      /expected 24 PCR values/,
    ],
    [
      "selection other than sha256:0-23",
      () =>
        makeEvidence({
          selection: [{ hash: 0x000b, bitmap: [0xff, 0xff, 0x7f] }],
          pcrs: Array.from({ length: 23 }, () => new Uint8Array(32)),
        }),
      /exactly sha256:0-23/,
    ],
    [
      "sha1 bank",
      () => makeEvidence({ selection: [{ hash: 0x0004, bitmap: [0xff, 0xff, 0xff] }] }),
      /exactly sha256:0-23/,
    ],
    ["wrong nonce", () => makeEvidence({ extraData: new Uint8Array(32) }), /nonce .* doesn't match/],
    ["full 48-byte digest instead of its first 32 bytes", () => makeEvidence({ extraData: digest48 }), /doesn't match/],
    ["wrong magic", () => makeEvidence({ magic: 0xff544348 }), /TPM_GENERATED_VALUE/],
    ["RSAPSS signature", () => makeEvidence({ sigAlg: 0x0016 }), /expected RSA-SSA/],
    [
      "non-hex PCR",
      () => {
        const e = makeEvidence();
        e.tpm_quote.pcrs[0] = "zz".repeat(32);
        return e;
      },
      /not an even-length hex string/,
    ],
    [
      "unpadded base64",
      () => {
        const e = makeEvidence();
        e.tpm_quote.message = e.tpm_quote.message.replace(/=+$/, "") + "A";
        return e;
      },
      /base64/,
    ],
    ["not an object", () => [1, 2], /must be a JSON object/],
    ["missing tpm_quote", () => ({ ak_public: b64(akDer) }), /tpm_quote must be a JSON object/],
  ])("rejects %s", (_n, make, msg) => {
    expect(() => verifyTpmEvidence(make(), digest48)).toThrow(msg);
  });

  it("checks PCR8 against the init-data digest when one was given", () => {
    const initDigest = sha256(new TextEncoder().encode('algorithm = "sha256"'));
    const pcrs = Array.from({ length: 24 }, () => new Uint8Array(32));
    pcrs[8] = sha256(concat(new Uint8Array(32), initDigest));
    expect(() => verifyTpmEvidence(makeEvidence({ pcrs }), digest48, { initDataDigest: initDigest })).not.toThrow();
    expect(() => verifyTpmEvidence(makeEvidence(), digest48, { initDataDigest: initDigest })).toThrow(
      /PCR\[8\] doesn't match/,
    );
  });

  it("trustee's own fixture passes signature and PCR checks and fails only the 32-byte nonce (it carries a 64-byte extraData)", () => {
    const ev = JSON.parse(fs.readFileSync(new URL("../../fixtures/tpm/tpm_evidence.json", import.meta.url), "utf8"));
    expect(() => verifyTpmEvidence(ev, digest48)).toThrow(/nonce a04182b5.* doesn't match expected report_data/);
  });

  it('is registered under tee "tpm" for the test KBS', () => {
    expect(verifier.tee).toBe("tpm");
    expect(() => verifier.verify(makeEvidence(), digest48, { tee: "tpm", initData: null, nonce: "n" })).not.toThrow();
  });
});
