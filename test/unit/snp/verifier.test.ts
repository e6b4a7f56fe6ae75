import { execFileSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { describe, expect, it } from "vitest";
import { parseCertTable } from "../../../platform/snp/certs.ts";
import { snpEvidenceJsonText } from "../../../platform/snp/json.ts";
import { decodeSnpReport } from "../../../platform/snp/report.ts";
import { concat } from "../../../platform/util/bytes.ts";
import { amdAnchors, certExtensions, verifySnpEvidence, type SnpVerifyOptions } from "../../kbs/verifiers/snp.ts";
import { vekPublicKey } from "../../../platform/snp/verify.ts";
import {
  makeCertTable,
  makeSignedReport,
  makeTestPki,
  testPki,
  unsignedReport,
  signReport,
} from "../../helpers/snp-fixtures.ts";
import { encodeSnpReport } from "../../../platform/snp/report.ts";

const pki = testPki();
const anchors: SnpVerifyOptions = { anchors: [{ arkPem: pki.arkPem, askPem: pki.askPem }] };
const digest = new Uint8Array(48).map((_, i) => 0x30 + i);
const reportData = concat(digest, new Uint8Array(16));

function evidence(raw: Uint8Array, table: Uint8Array | null = makeCertTable(pki)): unknown {
  const certs = table ? parseCertTable(table).map((e) => ({ cert_type: e.type, data: e.data })) : null;
  return JSON.parse(snpEvidenceJsonText(decodeSnpReport(raw), certs));
}

describe("test KBS snp verifier (trustee's checks)", () => {
  it("accepts v3 and v5 reports from the test chip, bound to digest ‖ zeros", () => {
    for (const version of [3, 5] as const) {
      const claims = verifySnpEvidence(evidence(makeSignedReport(pki, { version, reportData })), digest, anchors);
      expect(claims.report_data).toBe(Buffer.from(reportData).toString("hex"));
      expect(claims.reported_tcb_microcode).toBe("206");
    }
  });

  it("the test VCEK has serial number 0, like AMD's", () => {
    const out = execFileSync("openssl", ["x509", "-noout", "-serial"], { input: pki.vcekPem, encoding: "utf8" });
    expect(out.trim()).toBe("serial=00");
  });

  it("rejects a different digest, VMPL 1, report v2-like versions and a tampered field", () => {
    const ev = evidence(makeSignedReport(pki, { reportData }));
    expect(() =>
      verifySnpEvidence(
        ev,
        digest.map((x) => x ^ 1),
        anchors,
      ),
    ).toThrow(/report_data .* != expected/);
    expect(() => verifySnpEvidence(evidence(makeSignedReport(pki, { reportData, vmpl: 1 })), digest, anchors)).toThrow(
      /VMPL 1/,
    );
    const tampered = JSON.parse(JSON.stringify(ev));
    tampered.attestation_report.measurement[0] ^= 1;
    expect(() => verifySnpEvidence(tampered, digest, anchors)).toThrow(/signature does not verify/);
    const v4 = JSON.parse(JSON.stringify(ev));
    v4.attestation_report.version = 6;
    expect(() => verifySnpEvidence(v4, digest, anchors)).toThrow(/version 6/);
  });

  it("rejects a v2 report (REPORT_VERSION_MIN = 3) even with a valid signature", () => {
    const raw = fs.readFileSync(path.resolve(__dirname, "../../fixtures/snp/trustee-test-report.bin"));
    expect(() =>
      verifySnpEvidence(evidence(new Uint8Array(raw), null), digest, {
        ...anchors,
        vcek: new Uint8Array(fs.readFileSync(path.resolve(__dirname, "../../fixtures/snp/trustee-test-vcek.der"))),
      }),
    ).toThrow(/version 2/);
  });

  it("requires a VCEK/VLEK in a present cert_chain, and an offline VCEK when it is null", () => {
    const raw = makeSignedReport(pki, { reportData });
    expect(() => verifySnpEvidence(evidence(raw, makeCertTable(pki, ["ASK", "ARK"])), digest, anchors)).toThrow(
      /must include a VCEK\/VLEK/,
    );
    expect(() => verifySnpEvidence(evidence(raw, null), digest, anchors)).toThrow(/no offline VCEK/);
    expect(verifySnpEvidence(evidence(raw, null), digest, { ...anchors, vcek: pki.vcekPem }).measurement).toMatch(
      /^a5a5/,
    );
  });

  it("a VCEK from another (untrusted) chain is refused even though the report verifies with it", () => {
    const other = makeTestPki({ chipId: pki.chipId });
    const raw = makeSignedReport(other, { reportData });
    expect(() => verifySnpEvidence(evidence(raw, makeCertTable(other)), digest, anchors)).toThrow(
      /does not chain to a trusted/,
    );
  });

  it("the VCEK's TCB and hwID extensions must match the report", () => {
    const rep = unsignedReport(pki, { reportData });
    rep.reported_tcb = { ...rep.reported_tcb, snp: rep.reported_tcb.snp + 1 };
    expect(() => verifySnpEvidence(evidence(signReport(encodeSnpReport(rep), pki.vcekKey)), digest, anchors)).toThrow(
      /snp SPL 8 != reported_tcb.snp 9/,
    );
    const rep2 = unsignedReport(pki, { reportData });
    rep2.chip_id = rep2.chip_id.map((x) => x ^ 0xff);
    expect(() => verifySnpEvidence(evidence(signReport(encodeSnpReport(rep2), pki.vcekKey)), digest, anchors)).toThrow(
      /hwID/,
    );
  });

  it("verifies trustee's real Genoa e2e evidence against AMD's built-in chain (real VCEK extensions)", () => {
    const ev = JSON.parse(
      fs.readFileSync(path.resolve(__dirname, "../../fixtures/snp/trustee-e2e-evidence.json"), "utf8"),
    );
    const rd = new Uint8Array(ev.attestation_report.report_data);
    const claims = verifySnpEvidence(ev, rd, { anchors: amdAnchors() });
    expect(claims.reported_tcb_snp).toBe("23");
    expect(() => verifySnpEvidence(ev, rd, anchors)).toThrow(/does not chain/);
  });

  it("reads the AMD extensions of a real Turin VCEK (fmcSPL, 8-byte hwID)", () => {
    const der = new Uint8Array(fs.readFileSync(path.resolve(__dirname, "../../fixtures/snp/virtee-vcek_turin.der")));
    const ext = certExtensions(der);
    expect(ext.get("1.3.6.1.4.1.3704.1.4")!.length).toBe(8);
    expect(Array.from(ext.get("1.3.6.1.4.1.3704.1.3.9")!)).toEqual([2, 1, 0]);
    expect(vekPublicKey(der).length).toBe(97);
  });

  it("a Turin chip (fmc TCB layout, 8-byte hwID) verifies end to end", () => {
    const turin = makeTestPki({ turin: true });
    const raw = makeSignedReport(turin, { version: 5, reportData });
    expect(Array.from(raw.subarray(0x180, 0x188))).toEqual([1, 2, 0, 3, 0, 0, 0, 0x44]);
    const ev = evidence(raw, makeCertTable(turin));
    expect((ev as { attestation_report: { reported_tcb: unknown } }).attestation_report.reported_tcb).toEqual({
      fmc: 1,
      bootloader: 2,
      tee: 0,
      snp: 3,
      microcode: 0x44,
    });
    expect(
      verifySnpEvidence(ev, digest, { anchors: [{ arkPem: turin.arkPem, askPem: turin.askPem }] }).reported_tcb_snp,
    ).toBe("3");
  });
});
