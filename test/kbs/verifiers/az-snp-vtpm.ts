// trustee-style az-snp-vtpm verifier: the vTPM checks (az-common.ts) plus the SNP report embedded in
// the HCL report — REPORT_DATA[0:32] == SHA-256(runtime claims), VMPL 0, signed by the VCEK from the
// evidence, and that VCEK chaining to a trusted AMD ARK (via its ASK). The default trust anchors are
// AMD's real Milan ASK/ARK (test/fixtures/azure); tests pass their own with makeAzSnpVtpmVerifier.
import * as crypto from "node:crypto";
import * as fs from "node:fs";
import { decodeSnpReport } from "../../../platform/snp/report.ts";
import { vekPublicKey, verifySnpReportSignature } from "../../../platform/snp/verify.ts";
import { hex } from "../../../platform/util/bytes.ts";
import { parseAzureEvidence, verifyClaimsBinding, verifyVtpmQuote } from "./az-common.ts";
import { fail } from "./json-fields.ts";
import type { TeeVerifier } from "./types.ts";
import { pemCertificateBlocks } from "../../../platform/util/pem.ts";

export interface AzSnpOptions {
  tee?: "az-snp-vtpm" | "azsnpvtpm";
  /** PEM with ASK then ARK certificates, one chain per entry. */
  trustedChains?: string[];
}

const MILAN_CHAIN_FILE = new URL("../../fixtures/azure/trustee-az-snp-vtpm/vcek.pem", import.meta.url);

function splitPem(pem: string): crypto.X509Certificate[] {
  return pemCertificateBlocks(pem).map((c) => new crypto.X509Certificate(c));
}

/** AMD's Milan ASK+ARK: the last two certificates of trustee's vcek.pem (VCEK, ASK, ARK). */
function defaultChains(): string[] {
  const certs = splitPem(fs.readFileSync(MILAN_CHAIN_FILE, "utf8"));
  return [
    certs
      .slice(-2)
      .map((c) => c.toString())
      .join("\n"),
  ];
}

/** VCEK ← ASK ← ARK (self-signed) for one of the trusted chains. */
function chainsToTrustedRoot(vcekDer: Uint8Array, chains: string[], tee: string): void {
  let vcek: crypto.X509Certificate;
  try {
    vcek = new crypto.X509Certificate(Buffer.from(vcekDer));
  } catch (e) {
    fail(tee, `vcek is not a DER certificate: ${(e as Error).message}`);
  }
  for (const pem of chains) {
    const [ask, ark] = splitPem(pem);
    if (!ask || !ark) continue;
    if (ark.verify(ark.publicKey) && ask.verify(ark.publicKey) && vcek.verify(ask.publicKey)) return;
  }
  fail(tee, `VCEK (${vcek.subject.replace(/\n/g, ", ")}) does not chain to a trusted AMD ARK`);
}

export function makeAzSnpVtpmVerifier(o: AzSnpOptions = {}): TeeVerifier {
  const tee = o.tee ?? "az-snp-vtpm";
  let chains = o.trustedChains;
  return {
    tee,
    verify(evidence, expected, ctx) {
      const p = parseAzureEvidence(evidence, tee, "vcek");
      const claims = verifyVtpmQuote(p, expected, ctx, tee);
      if (p.hcl.tee !== "snp") fail(tee, `HCL report holds a ${p.hcl.tee} report, not SNP`);
      let report;
      try {
        report = decodeSnpReport(p.hcl.hardwareReport);
      } catch (e) {
        fail(tee, (e as Error).message);
      }
      verifyClaimsBinding(report.report_data, p.hcl, tee, "SNP report");
      if (report.vmpl !== 0) fail(tee, `SNP report VMPL ${report.vmpl}, expected 0 (the paravisor)`);
      chains ??= defaultChains();
      chainsToTrustedRoot(p.hardwareBlob, chains, tee);
      if (!verifySnpReportSignature(p.hcl.hardwareReport, vekPublicKey(p.hardwareBlob)))
        fail(tee, "SNP report signature does not verify with the VCEK");
      return {
        ...claims,
        measurement: hex(report.measurement),
        snp_report_data: hex(report.report_data),
        policy: `0x${report.policy.toString(16)}`,
      };
    },
  };
}

export const verifier: TeeVerifier = makeAzSnpVtpmVerifier();
export const legacyVerifier: TeeVerifier = makeAzSnpVtpmVerifier({ tee: "azsnpvtpm" });
