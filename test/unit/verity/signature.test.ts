// The owner's PKCS#7 signature over a root hash (agent/verity/pkcs7.ts + signature.ts), against
// signatures made by `openssl smime` (test/fixtures/verity/PROVENANCE.md) and hostile variants.
import * as fs from "node:fs";
import * as path from "node:path";
import { describe, expect, it } from "vitest";
import { parseDetachedSignature } from "../../../agent/verity/pkcs7.ts";
import { checkRootHashSignature, signerCertificates } from "../../../agent/verity/signature.ts";
import { CvmError, ParseError } from "../../../platform/util/errors.ts";
import { thrownBy } from "../../helpers/thrown.ts";

const DIR = path.join(import.meta.dirname, "../../fixtures/verity");
const bytes = (f: string) => new Uint8Array(fs.readFileSync(path.join(DIR, f)));
const text = (f: string) => fs.readFileSync(path.join(DIR, f), "utf8");
const HASH = text("roothash.txt");
const rsa = signerCertificates(text("rsa.pem"), "rsa.pem");
const ec = signerCertificates(text("ec.pem"), "ec.pem");
const check =
  (sig: Uint8Array | undefined, signers = rsa, hash = HASH) =>
  () =>
    checkRootHashSignature("root", hash, sig, signers);

describe("root hash signature (openssl smime output)", () => {
  it("accepts -noattr and default signed attributes, RSA and ECDSA, sha256 and sha384, embedded certificates ignored", () => {
    expect(check(bytes("rsa-noattr.p7s"))).not.toThrow();
    expect(check(bytes("rsa-attr.p7s"))).not.toThrow();
    expect(check(bytes("rsa-certs.p7s"))).not.toThrow();
    expect(check(bytes("ec-noattr.p7s"), ec)).not.toThrow();
    expect(check(bytes("ec-attr-sha384.p7s"), ec)).not.toThrow();
    // upper-case hex in the resource is the same hash: the message is the lowercase form
    expect(check(bytes("rsa-noattr.p7s"), rsa, HASH.toUpperCase())).not.toThrow();
    // a bundle with the old and the new signer (rotation)
    expect(check(bytes("ec-noattr.p7s"), [...rsa, ...ec])).not.toThrow();
  });

  it("the parser reads what openssl wrote", () => {
    const s = parseDetachedSignature(bytes("rsa-attr.p7s"));
    expect(s).toMatchObject({ digest: "sha256", family: "rsa" });
    expect(s.signedAttrs?.der[0]).toBe(0x31); // re-tagged SET OF
    expect("issuer" in s.sid).toBe(true);
    expect(parseDetachedSignature(bytes("ec-attr-sha384.p7s"))).toMatchObject({ digest: "sha384", family: "ec" });
  });

  it("host/KBS attacks: no signature, another key with the same subject, a signature over another hash, wrong key family", () => {
    const none = thrownBy(check(undefined), CvmError);
    expect(none.kind).toBe("volume");
    expect(none.message).toMatch(/carries no signature_p7s_b64/);
    for (const [sig, signers] of [
      [bytes("other-noattr.p7s"), rsa],
      [bytes("rsa-other-hash.p7s"), rsa],
      [bytes("ec-noattr.p7s"), rsa],
      [bytes("rsa-noattr.p7s"), ec],
    ] as const) {
      const e = thrownBy(check(sig, signers), CvmError);
      expect(e.kind).toBe("volume");
      expect(e.message).toMatch(/does not verify with verity\.signer_cert/);
    }
    // the right signature, but for a different hash than the one released
    expect(thrownBy(check(bytes("rsa-noattr.p7s"), rsa, "ab".repeat(32)), CvmError).kind).toBe("volume");
  });

  it("signed attributes whose messageDigest is not H(root hash) are refused", () => {
    const sig = bytes("rsa-attr.p7s");
    const at = Buffer.from(sig).indexOf(Buffer.from("0420", "hex"), 200); // OCTET STRING(32) of messageDigest
    const bad = new Uint8Array(sig);
    bad[at + 2]! ^= 1;
    expect(thrownBy(check(bad), CvmError).message).toMatch(/does not verify/);
  });

  it("hostile DER: truncated, wrong content type, embedded content, trailing bytes, oversized, indefinite length", () => {
    const sig = bytes("rsa-noattr.p7s");
    const refusals: [string, Uint8Array, RegExp][] = [
      ["truncated", sig.subarray(0, sig.length - 10), /runs past|missing|truncated/],
      ["trailing", new Uint8Array([...sig, 0]), /trailing/],
      ["oversized", new Uint8Array(20_000), /over the 16384-byte limit/],
      ["empty", new Uint8Array(0), /missing/],
      ["indefinite", new Uint8Array([0x30, 0x80, 0, 0]), /indefinite length/],
      ["non-minimal length", new Uint8Array([0x30, 0x81, 0x01, 0x00]), /minimally encoded/],
    ];
    // id-signedData → id-envelopedData (1.2.840.113549.1.7.3)
    const oid = Buffer.from(sig).indexOf(Buffer.from("2a864886f70d010702", "hex"));
    const wrongOid = new Uint8Array(sig);
    wrongOid[oid + 8] = 3;
    refusals.push(["wrong OID", wrongOid, /not id-signedData/]);
    for (const [name, der, re] of refusals) {
      const e = thrownBy(() => parseDetachedSignature(der), ParseError);
      expect(e.kind, name).toBe("volume");
      expect(e.message, name).toMatch(re);
    }
  });

  it("every single-byte corruption is refused (CvmError), never a crash or an acceptance", () => {
    for (const f of ["rsa-attr.p7s", "rsa-noattr.p7s", "ec-noattr.p7s"]) {
      const sig = bytes(f);
      const signers = f.startsWith("ec") ? ec : rsa;
      const accepted: number[] = [];
      for (let i = 0; i < sig.length; i++) {
        const bad = new Uint8Array(sig);
        bad[i]! ^= 0x41;
        try {
          check(bad, signers)();
          accepted.push(i);
        } catch (e) {
          expect(e, `${f} byte ${i}`).toBeInstanceOf(CvmError);
        }
      }
      expect(accepted, f).toEqual([]);
    }
  });
});
