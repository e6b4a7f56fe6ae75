import * as fs from "node:fs";
import * as path from "node:path";
import { describe, expect, it } from "vitest";
import {
  decodeSnpReport,
  encodeSnpReport,
  guestPolicy,
  keyInfo,
  platformInfo,
  SNP_REPORT_SIZE,
} from "../../../platform/snp/report.ts";
import {
  parseSnpEvidenceJson,
  snpEvidenceJsonText,
  snpEvidenceJsonValue,
  snpReportFromJson,
  snpReportToJsonText,
} from "../../../platform/snp/json.ts";
import { vekPublicKey, verifySnpReportSignature } from "../../../platform/snp/verify.ts";
import { ParseError } from "../../../platform/util/errors.ts";
import { pemCertificateBlocks } from "../../../platform/util/pem.ts";

const FIX = path.resolve(__dirname, "../../fixtures/snp");
const read = (f: string) => new Uint8Array(fs.readFileSync(path.join(FIX, f)));
/** Azure HCL reports embed SNP reports; they live with the other Azure vectors. */
const readAzure = (f: string) => new Uint8Array(fs.readFileSync(path.join(FIX, "../azure", f)));
const firstPem = (f: string) => pemCertificateBlocks(fs.readFileSync(path.join(FIX, f), "utf8"))[0]!;

// Every real report in the shared vectors, with the certificate that signed it.
const REAL: { name: string; raw: () => Uint8Array; vek: () => Uint8Array | string; version: number; vmpl: number }[] = [
  {
    name: "go-sev-guest attestation.bin (v2 Milan)",
    raw: () => read("gosev-attestation.bin"),
    vek: () => read("gosev-vcek.der"),
    version: 2,
    vmpl: 0,
  },
  {
    name: "virtee report_milan (v2 Milan)",
    raw: () =>
      new Uint8Array(Buffer.from(fs.readFileSync(path.join(FIX, "virtee-report_milan.hex"), "latin1").trim(), "hex")),
    vek: () => read("virtee-vcek_milan.der"),
    version: 2,
    vmpl: 0,
  },
  {
    name: "trustee test-report.bin (v2)",
    raw: () => read("trustee-test-report.bin"),
    vek: () => read("trustee-test-vcek.der"),
    version: 2,
    vmpl: 0,
  },
  {
    name: "trustee test-vlek-report.bin (v3 VLEK)",
    raw: () => read("trustee-test-vlek-report.bin"),
    vek: () => read("trustee-test-vlek.der"),
    version: 3,
    vmpl: 1,
  },
  {
    name: "teekit sev-gcp.bin (v5)",
    raw: () => read("teekit-sev-gcp.bin"),
    vek: () => firstPem("teekit-sev-gcp-vcek.pem"),
    version: 5,
    vmpl: 0,
  },
  {
    name: "teekit sev-gcp-x25519-bound.bin (v5 VMPL1)",
    raw: () => read("teekit-sev-gcp-x25519-bound.bin"),
    vek: () => firstPem("teekit-sev-gcp-x25519-vcek.pem"),
    version: 5,
    vmpl: 1,
  },
  {
    name: "trustee Azure HCL report (embedded v2)",
    raw: () => readAzure("trustee-az-snp-vtpm/hcl-report.bin").slice(0x20, 0x20 + SNP_REPORT_SIZE),
    vek: () => firstPem("../azure/trustee-az-snp-vtpm/vcek.pem"),
    version: 2,
    vmpl: 0,
  },
];

describe("SNP report codec on real reports", () => {
  for (const v of REAL) {
    it(`${v.name}: raw → JSON text → raw is byte-identical and the signature verifies`, () => {
      const raw = v.raw();
      expect(raw.length).toBe(SNP_REPORT_SIZE);
      const rep = decodeSnpReport(raw);
      expect(rep.version).toBe(v.version);
      expect(rep.vmpl).toBe(v.vmpl);
      expect(Buffer.from(encodeSnpReport(rep))).toEqual(Buffer.from(raw));
      const back = snpReportFromJson(JSON.parse(snpReportToJsonText(rep)));
      expect(Buffer.from(encodeSnpReport(back))).toEqual(Buffer.from(raw));
      const key = vekPublicKey(v.vek());
      expect(verifySnpReportSignature(encodeSnpReport(back), key)).toBe(true);
      // and a single flipped bit in the signed range breaks it
      const bad = encodeSnpReport(back);
      bad[0x90] = bad[0x90]! ^ 1;
      expect(verifySnpReportSignature(bad, key)).toBe(false);
    });
  }

  it("kinvolk Azure HCL report (embedded v2, no matching VCEK) round-trips", () => {
    const raw = readAzure("kinvolk/hcl-report-snp.bin").slice(0x20, 0x20 + SNP_REPORT_SIZE);
    expect(Buffer.from(encodeSnpReport(decodeSnpReport(raw)))).toEqual(Buffer.from(raw));
  });

  it("v2 has null cpuid and mit vectors; v3 cpuid only; v5 both", () => {
    const v2 = decodeSnpReport(read("trustee-test-report.bin"));
    expect([v2.cpuid_fam_id, v2.launch_mit_vector, v2.current_tcb.fmc]).toEqual([null, null, null]);
    const v3 = decodeSnpReport(read("trustee-test-vlek-report.bin"));
    expect([v3.cpuid_fam_id, v3.cpuid_mod_id, v3.launch_mit_vector]).toEqual([0x19, 0x01, null]);
    const v5 = decodeSnpReport(read("teekit-sev-gcp.bin"));
    expect([v5.launch_mit_vector, v5.current_mit_vector]).toEqual([0xbn, 0xbn]);
  });

  it("reproduces trustee's own JSON (upstream e2e evidence.json) exactly, and verifies it", () => {
    const text = fs.readFileSync(path.join(FIX, "trustee-e2e-evidence.json"), "utf8").trim();
    const ev = parseSnpEvidenceJson(JSON.parse(text));
    expect(ev.report.version).toBe(3);
    expect(ev.certChain!.map((c) => c.cert_type)).toEqual(["VCEK"]);
    const raw = encodeSnpReport(ev.report);
    expect(verifySnpReportSignature(raw, vekPublicKey(ev.certChain![0]!.data))).toBe(true);
    // The upstream file predates the mit-vector keys; apart from those our text is the same.
    const ours = snpEvidenceJsonText(decodeSnpReport(raw), ev.certChain);
    expect(ours.replace(',"launch_mit_vector":null,"current_mit_vector":null', "")).toBe(text);
  });

  for (const [json, bin] of [
    ["generated-snp-test-report.evidence.json", "trustee-test-report.bin"],
    ["generated-snp-test-vlek-report.evidence.json", "trustee-test-vlek-report.bin"],
  ]) {
    it(`emits the same text as the generated vector ${json}`, () => {
      const text = fs.readFileSync(path.join(FIX, json!), "utf8").trim();
      expect(snpEvidenceJsonText(decodeSnpReport(read(bin!)), null)).toBe(text);
      expect(JSON.stringify(snpEvidenceJsonValue(decodeSnpReport(read(bin!)), null))).toBe(text);
    });
  }
});

describe("SNP report codec: exactness and refusal", () => {
  it("u64 beyond 2^53 stays exact in the text form and through a bigint JSON value", () => {
    const rep = decodeSnpReport(read("teekit-sev-gcp.bin"));
    rep.plat_info = 0xfedcba9876543211n;
    const text = snpReportToJsonText(rep);
    expect(text).toContain('"plat_info":18364758544493064721,');
    const reparsed = snpReportFromJson({ ...JSON.parse(text), plat_info: 18364758544493064721n });
    expect(reparsed.plat_info).toBe(0xfedcba9876543211n);
    // A rounded JS number above 2^53 is refused rather than guessed.
    expect(() => snpReportFromJson(JSON.parse(text))).toThrow(/plat_info.*exceeds 2\^53/);
  });

  it("names the offset of a non-zero reserved byte in the signed range", () => {
    const raw = read("trustee-test-report.bin");
    raw[0x1f9] = 7;
    const e = (() => {
      try {
        decodeSnpReport(raw);
      } catch (x) {
        return x;
      }
    })() as ParseError;
    expect(e).toBeInstanceOf(ParseError);
    expect(e.offset).toBe(0x1f9);
    expect(e.field).toBe("reserved_0x1f8");
  });

  it("refuses unknown versions, wrong lengths, masked v2 chip ids and non-zero TCB padding", () => {
    const raw = read("trustee-test-report.bin");
    expect(() => decodeSnpReport(raw.subarray(0, 1000))).toThrow(ParseError);
    const v9 = raw.slice();
    v9[0] = 9;
    expect(() => decodeSnpReport(v9)).toThrow(/unsupported report version 9/);
    const masked = raw.slice();
    masked.fill(0, 0x1a0, 0x1e0);
    expect(() => decodeSnpReport(masked)).toThrow(/masked/);
    const tcb = raw.slice();
    tcb[0x183] = 1;
    expect(() => decodeSnpReport(tcb)).toThrow(/reserved TCB byte/);
  });

  it("JSON → raw refuses inconsistent structures (fmc on Milan, cpuid on v2, short arrays)", () => {
    const good = JSON.parse(snpReportToJsonText(decodeSnpReport(read("trustee-test-vlek-report.bin"))));
    expect(() => encodeSnpReport(snpReportFromJson({ ...good, current_tcb: { ...good.current_tcb, fmc: 1 } }))).toThrow(
      /fmc.*null/,
    );
    expect(() => encodeSnpReport(snpReportFromJson({ ...good, version: 2 }))).toThrow(/cpuid_fam_id/);
    expect(() => snpReportFromJson({ ...good, measurement: good.measurement.slice(1) })).toThrow(/measurement.*48/);
    expect(() => snpReportFromJson({ ...good, vmpl: -1 })).toThrow(/vmpl/);
    expect(() => snpReportFromJson({ ...good, report_data: [...good.report_data.slice(1), 256] })).toThrow(
      /report_data\[63\]/,
    );
  });

  it("a Turin report uses the Turin TCB layout (fmc first) and round-trips", () => {
    const rep = decodeSnpReport(read("trustee-test-vlek-report.bin"));
    rep.cpuid_fam_id = 0x1a;
    rep.cpuid_mod_id = 0x02;
    const t = { fmc: 1, bootloader: 2, tee: 3, snp: 4, microcode: 5 };
    rep.current_tcb = rep.reported_tcb = rep.committed_tcb = rep.launch_tcb = t;
    const raw = encodeSnpReport(rep);
    expect(Array.from(raw.subarray(0x180, 0x188))).toEqual([1, 2, 3, 4, 0, 0, 0, 5]);
    expect(decodeSnpReport(raw).reported_tcb).toEqual(t);
    expect(JSON.parse(snpReportToJsonText(decodeSnpReport(raw))).reported_tcb).toEqual(t);
  });
});

describe("SNP bit-field decoders (guestPolicy, keyInfo, platformInfo)", () => {
  const POLICY_BITS: [number, keyof ReturnType<typeof guestPolicy>][] = [
    [16, "smtAllowed"],
    [17, "reservedBit17"],
    [18, "migrateMa"],
    [19, "debugAllowed"],
    [20, "singleSocket"],
    [21, "cxlAllowed"],
    [22, "memAes256Xts"],
    [23, "raplDisabled"],
    [24, "ciphertextHiding"],
    [25, "pageSwapDisabled"],
  ];
  it("each GUEST_POLICY bit sets exactly its flag; the ABI version sits in bits 15:0", () => {
    const none = guestPolicy(0n);
    for (const [n, flag] of POLICY_BITS) {
      const g = guestPolicy(1n << BigInt(n));
      for (const [, other] of POLICY_BITS) expect(g[other], `bit ${n}: ${other}`).toBe(other === flag);
      expect(none[flag]).toBe(false);
    }
    expect(guestPolicy(0x3_1f05n)).toMatchObject({
      abiMajor: 0x1f,
      abiMinor: 5,
      smtAllowed: true,
      reservedBit17: true,
    });
    // bits above 25 (and above 2^53) do not leak into any flag
    expect(guestPolicy(0xffff_ffff_fc00_0000n)).toEqual(guestPolicy(0n));
  });

  it("KEY_INFO: signing key from bits 4:2, chip-key mask bit 1, author key bit 0", () => {
    expect(keyInfo(0)).toEqual({ signingKey: "VCEK", signingKeyField: 0, maskChipKey: false, authorKeyEnabled: false });
    expect(keyInfo(0b00111)).toEqual({
      signingKey: "VLEK",
      signingKeyField: 1,
      maskChipKey: true,
      authorKeyEnabled: true,
    });
    expect(keyInfo(7 << 2).signingKey).toBe("none");
    for (const f of [2, 3, 4, 5, 6])
      expect(keyInfo(f << 2)).toMatchObject({ signingKey: "reserved", signingKeyField: f });
    expect(keyInfo(0xffff_ffe0).signingKey).toBe("VCEK"); // higher bits are not part of the field
  });

  it("PLATFORM_INFO bits 0..5 and 7; bit 6 is reserved", () => {
    expect(Object.values(platformInfo(0n)).every((v) => v === false)).toBe(true);
    expect(platformInfo(0b1011_1111n)).toEqual({
      smtEnabled: true,
      tsmeEnabled: true,
      eccEnabled: true,
      raplDisabled: true,
      ciphertextHidingEnabled: true,
      aliasCheckComplete: true,
      tioEnabled: true,
    });
    expect(Object.values(platformInfo(1n << 6n)).every((v) => v === false)).toBe(true);
  });

  it("real reports: GCP (policy 0x30000, VCEK, SMT+ECC+alias check) and go-sev-guest's sample (debug allowed)", () => {
    const gcp = decodeSnpReport(read("teekit-sev-gcp.bin"));
    expect(guestPolicy(gcp.policy)).toMatchObject({ smtAllowed: true, reservedBit17: true, debugAllowed: false });
    expect(keyInfo(gcp.key_info).signingKey).toBe("VCEK");
    expect(platformInfo(gcp.plat_info)).toMatchObject({ smtEnabled: true, eccEnabled: true, aliasCheckComplete: true });
    expect(platformInfo(gcp.plat_info).tsmeEnabled).toBe(false);
    expect(guestPolicy(decodeSnpReport(read("gosev-attestation.bin")).policy).debugAllowed).toBe(true);
  });
});
