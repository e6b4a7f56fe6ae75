// Property tests for the Azure decoders of host input: the metadata service's PEM certificates and
// the HCL report NV blob. Mutations of real vectors must decode or raise ParseError, never anything
// untyped, and the generators must reach past the first field (some inputs decode).
import { describe, expect, it } from "vitest";
import { parseHclReport } from "../../../platform/azure/hcl.ts";
import { certificatesFromPem, derSequenceSize } from "../../../platform/util/pem.ts";
import { ParseError } from "../../../platform/util/errors.ts";
import { prng, type Prng } from "../../helpers/prng.ts";
import { VECTORS, fixture, fixtureText } from "./fixtures.ts";

function decodeOrParseError<T>(f: () => T, what: string): T | undefined {
  try {
    return f();
  } catch (e) {
    if (e instanceof ParseError) return undefined;
    throw new Error(`${what}: ${(e as Error).name}: ${(e as Error).message}`);
  }
}

function mutateText(r: Prng, text: string): string {
  const at = r.int(0, text.length);
  switch (r.int(0, 4)) {
    case 0:
      return text.slice(0, at);
    case 1:
      return text.slice(0, at) + String.fromCharCode(r.int(0x20, 0x7e)) + text.slice(at + 1);
    case 2:
      return (
        text.slice(0, at) +
        r.pick([
          "-----END CERTIFICATE-----\n",
          "-----BEGIN CERTIFICATE-----\n",
          "-----BEGIN PRIVATE KEY-----\n",
          "====",
          "\r\n",
        ]) +
        text.slice(at)
      );
    case 3:
      return text.replace(/[A-Za-z0-9+/]{4}(?=[A-Za-z0-9+/]*\n-----END)/, "MIIB"); // a plausible but wrong DER length
    default:
      return text.slice(0, at) + text.slice(r.int(at, text.length));
  }
}

describe("certificatesFromPem under hostile metadata responses", () => {
  const chain = fixtureText("trustee-az-snp-vtpm/vcek.pem");
  it("decodes or raises ParseError; every certificate it returns is exactly one DER SEQUENCE", () => {
    const r = prng(0x9e3);
    let decoded = 0;
    for (let i = 0; i < 600; i++) {
      const text = mutateText(r, r.bool() ? chain : mutateText(r, chain));
      const certs = decodeOrParseError(() => certificatesFromPem(text, "THIM certificateChain"), `case ${i}`);
      if (!certs) continue;
      decoded++;
      for (const der of certs) expect(derSequenceSize(der)).toBe(der.length);
    }
    expect(decoded).toBeGreaterThan(50);
  });
});

describe("parseHclReport under hostile NV contents", () => {
  it("mutated real reports decode or raise ParseError, and the generator reaches the claims parser", () => {
    const bases = [fixture(VECTORS.trusteeSnp.hcl), fixture(VECTORS.trusteeTdx.hcl)];
    const r = prng(0x4c1);
    let decoded = 0;
    for (let i = 0; i < 600; i++) {
      const b = r.pick(bases).slice();
      // Mostly hit the header, the HclData sizes and the claims JSON; sometimes anywhere.
      for (let k = r.int(1, 3); k > 0; k--)
        b[r.pick([r.int(0, 0x1f), r.int(0x4c0, 0x4d3), r.int(0x4d4, 0x4d4 + 64), r.int(0, b.length - 1)])] = r.int(
          0,
          255,
        );
      const input = r.int(0, 4) === 0 ? b.subarray(0, r.int(0, b.length)) : b;
      if (decodeOrParseError(() => parseHclReport(input), `case ${i}`)) decoded++;
    }
    expect(decoded).toBeGreaterThan(20);
  });
});
