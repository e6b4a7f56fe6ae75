import * as fs from "node:fs";
import * as path from "node:path";
import * as zlib from "node:zlib";
import { describe, expect, it } from "vitest";
import { inspectBytes, resolveInput, resolveType, trusteeEvidence } from "../../../agent/inspect/index.ts";
import { detectType } from "../../../agent/inspect/detect.ts";
import { INSPECT_TYPES, type InspectType } from "../../../agent/inspect/model.ts";
import { renderJson, renderText } from "../../../agent/inspect/render.ts";
import { CERT_GUIDS, encodeCertTable } from "../../../platform/snp/certs.ts";
import { CvmError, ParseError } from "../../../platform/util/errors.ts";
import { prng } from "../../helpers/prng.ts";
import { pemCertificateBlocks } from "../../../platform/util/pem.ts";

const TDX = path.join(import.meta.dirname, "../../fixtures/tdx");
const EL = path.join(import.meta.dirname, "../../fixtures/eventlog");
const SNP = path.join(import.meta.dirname, "../../fixtures/snp");
const AZURE = path.join(import.meta.dirname, "../../fixtures/azure");
const load = (p: string) => {
  const b = fs.readFileSync(p);
  return new Uint8Array(p.endsWith(".gz") ? zlib.gunzipSync(b) : b);
};

function certTable(): Uint8Array {
  const pems = pemCertificateBlocks(fs.readFileSync(path.join(SNP, "milan-ask-ark.pem"), "utf8"));
  const der = (pem: string) => new Uint8Array(Buffer.from(pem.replace(/-----[A-Z ]+-----|\s/g, ""), "base64"));
  return encodeCertTable(
    [
      { guid: CERT_GUIDS.VCEK, data: load(path.join(SNP, "trustee-test-vcek.der")) },
      { guid: CERT_GUIDS.ASK, data: der(pems[0]!) },
      { guid: CERT_GUIDS.ARK, data: der(pems[1]!) },
    ],
    16384,
  );
}

const samples: Array<[string, () => Uint8Array, InspectType]> = [
  ["tdx_quote_4.dat", () => load(path.join(TDX, "tdx_quote_4.dat")), "tdx-quote"],
  ["tdx_quote_5.dat", () => load(path.join(TDX, "tdx_quote_5.dat")), "tdx-quote"],
  ["cos-113-tdx-quote.dat", () => load(path.join(TDX, "cos-113-tdx-quote.dat")), "tdx-quote"],
  ["tdx_report_1.bin", () => load(path.join(TDX, "tdx_report_1.bin")), "tdx-report"],
  ["ccel_data.dat", () => load(path.join(TDX, "ccel_data.dat.gz")), "ccel"],
  ["CCEL_unpadded.data.bin", () => load(path.join(EL, "CCEL_unpadded.data.bin")), "ccel"],
  ["ccel_table.dat", () => load(path.join(TDX, "ccel_table.dat")), "ccel-table"],
  ["binary_bios_measurements", () => load(path.join(EL, "binary_bios_measurements")), "eventlog"],
  ["event-uefi-sha1-log.bin", () => load(path.join(EL, "event-uefi-sha1-log.bin")), "eventlog"],
  ["sev-gcp.bin", () => load(path.join(SNP, "teekit-sev-gcp.bin")), "snp-report"],
  ["test-report.bin", () => load(path.join(SNP, "trustee-test-report.bin")), "snp-report"],
  ["cert table", certTable, "snp-certs"],
  ["hcl-report-tdx.bin", () => load(path.join(AZURE, "kinvolk/hcl-report-tdx.bin")), "hcl-report"],
  ["trustee az snp hcl", () => load(path.join(AZURE, "trustee-az-snp-vtpm/hcl-report.bin")), "hcl-report"],
];

describe("inspect: detection and decoding of real artefacts", () => {
  for (const [name, bytes, type] of samples) {
    it(`${name} is detected as ${type} and renders`, () => {
      const b = bytes();
      expect(detectType(b)).toBe(type);
      const i = inspectBytes(b, type);
      expect(i.type).toBe(type);
      expect(renderText(i).length).toBeGreaterThan(100);
      expect(JSON.parse(renderJson(i)).type).toBe(type);
    });
  }

  it("TDX quote: measurements, verified signature, no warnings for a production quote", () => {
    const i = inspectBytes(load(path.join(TDX, "cos-113-tdx-quote.dat")), "tdx-quote");
    const text = renderText(i);
    expect(text).toContain(
      "MRTD:          dae67181d3d65e073ad8f95b7907d5e927bfe9761c9ff3e9b89734a45d8954dba41394c7717cb2735396c1d04231f94a",
    );
    expect(text).toMatch(/quote signature: +valid/);
    expect(text).toMatch(/trailing bytes: +3065/);
    expect(i.warnings).toEqual([]);
    const j = JSON.parse(renderJson(i));
    expect(j.claims.quote.body.rtmr_2).toBe(
      "4969684dc87381fc3b3134176c8d8806eaf0a901859f5f70cfae8d17714b46c10a8de219048c9fc09f11f381a6fbe7c1",
    );
    expect(j.signature).toMatchObject({ valid: true, qe_binding: true, pck_chain_certs: 3 });
  });

  it("TDX quote with DEBUG attributes is flagged", () => {
    expect(inspectBytes(load(path.join(TDX, "tdx_quote_4.dat")), "tdx-quote").warnings.join()).toMatch(/DEBUG/);
  });

  it("CCEL: replayed RTMRs and the event list", () => {
    const i = inspectBytes(load(path.join(TDX, "ccel_data.dat.gz")), "ccel");
    const j = JSON.parse(renderJson(i));
    expect(j.replay.RTMR0.sha384).toMatch(/^3fa2f61f/);
    expect(j.events).toHaveLength(43);
    expect(j.length).toBe(18101);
    expect(renderText(i)).toMatch(/log length: +18101 of 262144 bytes \(then 0xFF\/0x00 padding\)/);
  });

  it("TCG log: replayed PCRs per bank", () => {
    const j = JSON.parse(renderJson(inspectBytes(load(path.join(EL, "binary_bios_measurements")), "eventlog")));
    expect(j.replay.PCR0.sha256).toBe("65f5dd3770c3c3447fc3b6f48f84e0648b42be3ce04499fb75d63c5159b9c5f3");
    expect(j.replay.PCR7.sha1).toBe("b4656dfec18ab53976cb06cee03582f69a99a74b");
  });

  it("SNP report: policy decoded, trustee evidence struct equals the reference JSON", () => {
    const b = load(path.join(SNP, "trustee-test-report.bin"));
    const text = renderText(inspectBytes(b, "snp-report"));
    expect(text).toContain("0x3001f (ABI >= 0.31; SMT allowed, debug disallowed)");
    expect(text).toContain(
      "a1f3930413247bb38cfc171579ea3c12d5fe4901f0c792f63fd75d98f1ef827c23500644e0e692e6be917f9050d3d38c",
    );
    const want = JSON.parse(fs.readFileSync(path.join(SNP, "generated-snp-test-report.evidence.json"), "utf8"));
    expect(JSON.parse(trusteeEvidence(b, "snp-report"))).toEqual(want);
  });

  it("TDX quote --trustee: the evidence struct with the quote without trailing bytes", () => {
    const b = load(path.join(TDX, "tdx_quote_6.dat"));
    const ev = JSON.parse(trusteeEvidence(b, "tdx-quote"));
    expect(ev.cc_eventlog).toBeNull();
    expect(Buffer.from(ev.quote, "base64").length).toBe(5006 - 70);
    expect(() => trusteeEvidence(load(path.join(EL, "CCEL_unpadded.data.bin")), "ccel")).toThrow(CvmError);
  });

  it("SNP cert table: entries named, subjects read", () => {
    const j = JSON.parse(renderJson(inspectBytes(certTable(), "snp-certs")));
    expect(j.entries.map((e: { type: string }) => e.type)).toEqual(["VCEK", "ASK", "ARK"]);
    expect(j.entries[0].subject).toMatch(/SEV-VCEK/);
    expect(j.warnings).toEqual([]);
  });

  it("HCL report (TDX): binding verified, embedded TDREPORT decoded", () => {
    const i = inspectBytes(load(path.join(AZURE, "trustee-az-tdx-vtpm/hcl-report.bin")), "hcl-report");
    expect(i.warnings).toEqual([]);
    const j = JSON.parse(renderJson(i));
    expect(j.claims_bound).toBe(true);
    expect(j.hardware_report.mr_td).toBe(
      "024a32b070383331181619fa387cb4d55d1e38879f989933055ccad5bc2db795d1737b66205949d15469dc8c1ba7ab7b",
    );
    expect(renderText(i)).toContain("HCLAkPub");
  });

  it("HCL report with tampered claims warns that they are not bound", () => {
    const b = load(path.join(AZURE, "kinvolk/hcl-report-snp.bin")).slice();
    // Change one hex digit of vmUniqueId: still valid JSON, no longer what the hardware report binds.
    const at = Buffer.from(b).indexOf('vmUniqueId":"') + 13;
    expect(at).toBeGreaterThan(13);
    b[at] = b[at] === 0x30 ? 0x31 : 0x30;
    const i = inspectBytes(b, "hcl-report");
    expect(i.warnings.join()).toMatch(/not bound/);
  });
});

describe("inspect: evidence JSON and text input", () => {
  const quote = () => Buffer.from(load(path.join(TDX, "cos-113-tdx-quote.dat")));
  const ccel = () => Buffer.from(load(path.join(TDX, "ccel_data.dat.gz")));
  const utf8 = (o: unknown) => new TextEncoder().encode(JSON.stringify(o));

  it("tdx evidence inside an /attest body: quote decoded, CCEL replayed against its RTMRs", () => {
    const body = utf8({
      "tee-evidence": {
        primary_evidence: { cc_eventlog: ccel().toString("base64"), quote: quote().toString("base64") },
        additional_evidence: "",
      },
    });
    expect(detectType(body)).toBe("evidence-json");
    const i = inspectBytes(body, "evidence-json");
    expect(i.warnings).toEqual([]);
    const j = JSON.parse(renderJson(i));
    expect(j.tee).toBe("tdx");
    expect(j.cc_eventlog.rtmr_match).toEqual({ RTMR0: true, RTMR1: true, RTMR2: true, RTMR3: true });
    expect(renderText(i)).toMatch(/RTMR2: +replay matches the quote/);
  });

  it("tdx evidence whose event log belongs to another TD is flagged per RTMR", () => {
    const other = Buffer.from(load(path.join(EL, "CCEL_data_ovmf")));
    const i = inspectBytes(
      utf8({ cc_eventlog: other.toString("base64"), quote: quote().toString("base64") }),
      "evidence-json",
    );
    expect(i.warnings.filter((w) => /does not replay to the quote's RTMR\d/.test(w))).toHaveLength(3);
    const none = inspectBytes(utf8({ cc_eventlog: null, quote: quote().toString("base64") }), "evidence-json");
    expect(renderText(none)).toMatch(/cc_eventlog: +absent/);
  });

  it("snp evidence JSON is re-encoded and decoded like the raw report", () => {
    const ev = load(path.join(SNP, "generated-snp-test-report.evidence.json"));
    const i = inspectBytes(ev, resolveType(ev));
    expect(i.type).toBe("evidence-json");
    expect(renderText(i)).toContain(
      "a1f3930413247bb38cfc171579ea3c12d5fe4901f0c792f63fd75d98f1ef827c23500644e0e692e6be917f9050d3d38c",
    );
    expect(() => inspectBytes(utf8({ hello: 1 }), "evidence-json")).toThrow(/neither tdx evidence/);
    expect(() => inspectBytes(utf8({ quote: "!!" }), "evidence-json")).toThrow(ParseError);
  });

  it("hex and base64 text are decoded when the raw bytes are not recognised", () => {
    const hexText = new TextEncoder().encode(
      Buffer.from(load(path.join(SNP, "teekit-sev-gcp.bin"))).toString("hex") + "\n",
    );
    expect(resolveInput(hexText)).toMatchObject({ type: "snp-report", encoding: "hex" });
    const b64Text = new TextEncoder().encode(quote().toString("base64"));
    const r = resolveInput(b64Text);
    expect(r).toMatchObject({ type: "tdx-quote", encoding: "base64" });
    expect(r.bytes.length).toBe(8000);
    expect(resolveInput(b64Text, "tdx-quote").bytes.length).toBe(8000);
    expect(() => resolveInput(new TextEncoder().encode("00112233445566778899aabbccddeeff"))).toThrow(/cannot tell/);
  });
});

describe("inspect: errors", () => {
  it("unknown bytes ask for --type; a bad --type is a usage error", () => {
    try {
      resolveType(new Uint8Array(100));
      expect.unreachable();
    } catch (e) {
      expect((e as CvmError).kind).toBe("evidence");
      expect((e as CvmError).hint).toMatch(/--type/);
    }
    expect(() => resolveType(new Uint8Array(100), "png")).toThrow(CvmError);
    expect(resolveType(new Uint8Array(100), "ccel")).toBe("ccel");
  });

  it("truncated inputs give a ParseError naming field and offset", () => {
    const q = load(path.join(TDX, "tdx_quote_5.dat")).subarray(0, 300);
    expect(() => inspectBytes(q, "tdx-quote")).toThrow(
      "TDX quote: field 'body.mr_owner' at offset 286 (0x11e): needs 48 byte(s), only 14 left of 300",
    );
    const snp = load(path.join(SNP, "teekit-sev-gcp.bin")).subarray(0, 600);
    expect(() => inspectBytes(snp, "snp-report")).toThrow(ParseError);
    const hcl = load(path.join(AZURE, "kinvolk/hcl-report-tdx.bin")).subarray(0, 1000);
    expect(() => inspectBytes(hcl, "hcl-report")).toThrow(ParseError);
  });

  it("random, truncated and bit-flipped input of every type only raises typed errors", () => {
    const r = prng(42);
    for (const [, bytes] of samples) {
      const base = bytes();
      for (let i = 0; i < 25; i++) {
        let m: Uint8Array = base.slice();
        const k = r.int(0, 2);
        if (k === 0) m = m.subarray(0, r.int(0, m.length));
        else if (k === 1)
          for (let j = 0; j < r.int(1, 8); j++) {
            const at = r.int(0, m.length - 1);
            m[at] = m[at]! ^ (1 << r.int(0, 7));
          }
        else m = r.bytes(r.int(0, 1500));
        for (const type of INSPECT_TYPES) {
          try {
            renderJson(inspectBytes(m, type));
          } catch (e) {
            if (!(e instanceof CvmError)) throw new Error(`${type}: untyped error ${(e as Error).stack}`);
          }
        }
      }
    }
  });
});
