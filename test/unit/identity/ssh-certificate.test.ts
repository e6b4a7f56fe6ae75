import * as fs from "node:fs";
import * as path from "node:path";
import { describe, expect, it } from "vitest";
import { parseOpensshPrivateKey } from "../../../agent/identity/openssh-key.ts";
import { certificateCurrent, parseHostCertificate } from "../../../agent/identity/ssh-certificate.ts";
import { ParseError } from "../../../platform/util/errors.ts";
import { thrownBy } from "../../helpers/thrown.ts";

const FIX = path.join(import.meta.dirname, "../../fixtures/ssh");
const fixture = (name: string) => fs.readFileSync(path.join(FIX, name));
const hostKey = parseOpensshPrivateKey(fixture("host_ed25519")).publicKey;
// `ssh-keygen -lf test/fixtures/ssh/ca_ed25519.pub` (PROVENANCE.md)
const CA_FINGERPRINT = "SHA256:csT1TaWPBJmYN1kCuqqdq2t45ZqsBzf2Q3kYKnBzGEo";

const refusal = (text: Uint8Array, key = hostKey) => thrownBy(() => parseHostCertificate(text, key), ParseError);

/** The certificate with one byte of its blob changed at `offset`. */
function tampered(offset: number): Buffer {
  const [type, b64] = fixture("host_ed25519-cert.pub").toString().split(" ");
  const blob = Buffer.from(b64!, "base64");
  blob[offset]! ^= 1;
  return Buffer.from(`${type} ${blob.toString("base64")}\n`);
}

describe("OpenSSH host certificate", () => {
  it("parses ssh-keygen's host certificate for the host key and verifies its CA signature", () => {
    const c = parseHostCertificate(fixture("host_ed25519-cert.pub"), hostKey);
    expect(c.keyId).toBe("host-fixture");
    expect(c.principals).toEqual(["vm.example", "10.0.2.15"]);
    expect(c.caFingerprint).toBe(CA_FINGERPRINT);
    expect(c.validAfter < c.validBefore).toBe(true);
    expect(certificateCurrent(c, Date.UTC(2026, 0, 1) / 1000)).toBe(true);
    // The canonical line is the file without its comment.
    expect(c.line).toBe(fixture("host_ed25519-cert.pub").toString().split(" ").slice(0, 2).join(" ") + "\n");
  });

  it("refuses a certificate for another key", () => {
    const e = refusal(fixture("other_ed25519-cert.pub"));
    expect(e.field).toBe("public key");
    expect(e.message).toMatch(/certifies another key/);
  });

  it("refuses a user certificate", () => {
    expect(refusal(fixture("host_ed25519-usercert.pub")).message).toMatch(/is 1 \(a user certificate\), expected 2/);
  });

  it("refuses a CA it cannot verify (ecdsa) rather than pass it on unchecked", () => {
    expect(refusal(fixture("host_ed25519-ecdsacert.pub")).message).toMatch(/ecdsa-sha2-nistp256.*ed25519 CA/);
  });

  it("refuses a certificate whose signed bytes were changed (key id)", () => {
    // type(4+32) nonce(4+32) pk(4+32) serial(8) type(4) key id length(4): the key id's first byte.
    const e = refusal(tampered(36 + 36 + 36 + 8 + 4 + 4));
    expect(e.field).toBe("signature");
    expect(e.message).toMatch(/does not verify/);
  });

  it("refuses every truncation, a wrong type name, a non-certificate and oversized input", () => {
    const [type, b64] = fixture("host_ed25519-cert.pub").toString().split(" ");
    const blob = Buffer.from(b64!, "base64");
    for (let n = 0; n < blob.length; n += 7)
      refusal(Buffer.from(`${type} ${blob.subarray(0, n).toString("base64") || "AAAA"}`));
    expect(refusal(fixture("host_ed25519.pub")).field).toBe("type");
    expect(refusal(Buffer.from(`${type} not*base64`)).field).toBe("base64");
    expect(refusal(Buffer.alloc(20000, 0x41)).field).toBe("file");
    expect(refusal(Buffer.from(`${type} ${b64}\nsecond line`)).field).toBe("file");
  });

  it("reports an expired window without refusing it (the guest clock is the host's)", () => {
    const c = parseHostCertificate(fixture("host_ed25519-expired-cert.pub"), hostKey);
    expect(certificateCurrent(c, Date.UTC(2026, 0, 1) / 1000)).toBe(false);
  });
});
