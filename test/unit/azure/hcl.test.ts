import { createHash } from "node:crypto";
import { describe, expect, it } from "vitest";
import {
  parseHclReport,
  reportDataBindsClaims,
  runtimeClaimsDigest,
  userDataCarries,
} from "../../../platform/azure/hcl.ts";
import { ParseError } from "../../../platform/util/errors.ts";
import { prng } from "../../helpers/prng.ts";
import { buildHclReport } from "../../helpers/azure-hcl.ts";
import { parseTdReport } from "../../../platform/tdx/tdreport.ts";
import { fixture } from "./fixtures.ts";

// Expected values: the upstream vectors named in test/fixtures/azure/PROVENANCE.md.
const REPORTS = [
  {
    file: "kinvolk/hcl-report-snp.bin",
    version: 1,
    reportSize: 1819,
    tee: "snp",
    varSize: 583,
    blob: 2048,
    userData: false,
  },
  {
    file: "kinvolk/hcl-report-tdx.bin",
    version: 2,
    reportSize: 2438,
    tee: "tdx",
    varSize: 1202,
    blob: 2600,
    userData: true,
  },
  {
    file: "trustee-az-snp-vtpm/hcl-report.bin",
    version: 1,
    reportSize: 2346,
    tee: "snp",
    varSize: 1110,
    blob: 2600,
    userData: true,
  },
  {
    file: "trustee-az-tdx-vtpm/hcl-report.bin",
    version: 2,
    reportSize: 2437,
    tee: "tdx",
    varSize: 1201,
    blob: 2600,
    userData: true,
  },
] as const;

describe("HCL report parser on real Azure reports", () => {
  for (const v of REPORTS) {
    it(`${v.file}: header, type, claims, AK and REPORT_DATA binding`, () => {
      const r = parseHclReport(fixture(v.file));
      expect(r.raw.length).toBe(v.blob);
      expect(r.version).toBe(v.version);
      expect(r.reportSize).toBe(v.reportSize);
      expect(r.requestType).toBe(2);
      expect(r.tee).toBe(v.tee);
      expect(r.hashType).toBe(1);
      expect(r.variableData.length).toBe(v.varSize);
      expect(r.hardwareReport.length).toBe(v.tee === "snp" ? 1184 : 1024);
      expect(r.akPub?.kty).toBe("RSA");
      expect(r.akPub?.n.length).toBeGreaterThan(300); // 2048-bit modulus in base64url
      expect(reportDataBindsClaims(r)).toBe(true);
      expect(r.reportData.subarray(32).every((b) => b === 0)).toBe(true);
      expect(r.userData !== undefined).toBe(v.userData);
      if (v.userData) expect(r.userData).toBe("00".repeat(64));
    });
  }

  it("REPORT_DATA binds the stored claims bytes: one changed claim byte breaks it", () => {
    const raw = fixture("trustee-az-snp-vtpm/hcl-report.bin");
    const r = parseHclReport(raw);
    expect(Buffer.from(runtimeClaimsDigest(r))).toEqual(
      createHash("sha256")
        .update(raw.subarray(0x4d4, 0x4d4 + 1110))
        .digest(),
    );
    const text = Buffer.from(raw.subarray(0x4d4, 0x4d4 + 1110)).toString();
    const at = 0x4d4 + text.indexOf("911B0EF8");
    const c = raw.slice();
    c[at] = "8".charCodeAt(0);
    const tampered = parseHclReport(c);
    expect((tampered.claims["vm-configuration"] as Record<string, string>).vmUniqueId!.startsWith("811B")).toBe(true);
    expect(reportDataBindsClaims(tampered)).toBe(false);
  });

  it("user-data check is a hex prefix match", () => {
    const digest = new Uint8Array(48).fill(0xab);
    expect(userDataCarries({ userData: "ab".repeat(48) + "00".repeat(16) }, digest)).toBe(true);
    expect(userDataCarries({ userData: "AB".repeat(48) }, digest)).toBe(true);
    expect(userDataCarries({ userData: "ab".repeat(47) }, digest)).toBe(false);
    expect(userDataCarries({ userData: undefined }, digest)).toBe(false);
  });
});

describe("HCL report parser on hostile input", () => {
  const good = fixture("trustee-az-tdx-vtpm/hcl-report.bin");
  const le = (b: Uint8Array, off: number, v: number) => {
    const c = b.slice();
    new DataView(c.buffer).setUint32(off, v, true);
    return c;
  };
  const cases: [string, Uint8Array, string][] = [
    ["bad signature", le(good, 0, 0x41414141), "signature"],
    ["report_size beyond the blob", le(good, 8, 1_000_000), "report_size"],
    ["report_size below the fixed part", le(good, 8, 100), "report_size"],
    ["variable data past report_size", le(good, 0x4d0, 2437), "variable_data_size"],
    ["huge variable data size", le(good, 0x4d0, 0xffffffff), "variable_data_size"],
    ["data_size inconsistent", le(good, 0x4c0, 5), "data_size"],
    ["unknown report type", le(good, 0x4c8, 3), "report_type"],
    ["unknown hash type", le(good, 0x4cc, 9), "report_data_hash_type"],
    ["truncated", good.slice(0, 0x4c4), "report_size"],
    ["empty", new Uint8Array(0), "signature"],
  ];
  for (const [name, bytes, field] of cases) {
    it(`${name} → ParseError naming ${field}`, () => {
      let err: unknown;
      try {
        parseHclReport(bytes);
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(ParseError);
      expect((err as ParseError).field).toContain(field);
    });
  }

  it("claims that are not JSON are rejected with the offset of the claims", () => {
    const c = good.slice();
    c[0x4d4] = 0x7b + 1; // '|' instead of '{'
    expect(() => parseHclReport(c)).toThrow(/runtime_claims.*offset 1236/);
  });

  it("random corruption never throws anything but ParseError (seeded)", () => {
    const seed = 0xa2c7;
    const rng = prng(seed);
    for (let i = 0; i < 400; i++) {
      const c = good.slice();
      for (let k = rng.int(1, 6); k > 0; k--)
        c[rng.pick([0, 4, 8, 0x4c0, 0x4c8, 0x4cc, 0x4d0, 0x4d4, rng.int(0, c.length - 1)]) + rng.int(0, 3)] = rng.int(
          0,
          255,
        );
      try {
        parseHclReport(rng.bool() ? c : c.slice(0, rng.int(0, c.length)));
      } catch (e) {
        if (!(e instanceof ParseError)) throw new Error(`seed ${seed} case ${i}: ${(e as Error).message}`);
      }
    }
  });
});

describe("paravisor stand-in's HCL builder (test/helpers/azure-hcl.ts) agrees with the parsers", () => {
  it("TDX: the platform TDREPORT parser reads the REPORTDATA and MRTD the builder placed; claims bind", () => {
    const akPub = { kty: "RSA" as const, n: Buffer.alloc(256, 7).toString("base64url"), e: "AQAB" };
    const mrTd = new Uint8Array(48).fill(0x42);
    const blob = buildHclReport({ tee: "tdx", akPub, userData: new Uint8Array(48).fill(0xab), nvSize: 2048, mrTd });
    const r = parseHclReport(blob);
    expect(r.tee).toBe("tdx");
    expect(reportDataBindsClaims(r)).toBe(true);
    expect(r.akPub).toMatchObject({ kid: "HCLAkPub", n: akPub.n, e: "AQAB" });
    expect(userDataCarries(r, new Uint8Array(48).fill(0xab))).toBe(true);
    const td = parseTdReport(r.hardwareReport);
    expect(Buffer.from(td.reportData)).toEqual(Buffer.from(r.reportData));
    expect(Buffer.from(td.tdInfo.mrTd)).toEqual(Buffer.from(mrTd));
  });
});
