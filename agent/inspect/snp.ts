// `inspect` for SEV-SNP attestation reports and GHCB certificate tables. Decoding is the SNP
// codecs' (platform/snp); this file only explains the fields to people (SEV-SNP ABI spec tables).
import { createHash, X509Certificate } from "node:crypto";
import { hex, isAllZero } from "../../platform/util/bytes.ts";
import { decodeSnpReport, type SnpReport, type TcbVersion } from "../../platform/snp/report.ts";
import { snpEvidenceJsonText } from "../../platform/snp/json.ts";
import { certTypeName, parseCertTable } from "../../platform/snp/certs.ts";
import type { Inspection, Row, Section } from "./model.ts";

/** Guest policy bits (SEV-SNP ABI, GUEST_POLICY). */
export function decodeSnpPolicy(p: bigint): { abiMajor: number; abiMinor: number; flags: string[] } {
  const bit = (n: number) => ((p >> BigInt(n)) & 1n) === 1n;
  const flags: string[] = [];
  flags.push(bit(16) ? "SMT allowed" : "SMT not allowed");
  if (!bit(17)) flags.push("reserved bit 17 clear (must be 1)");
  if (bit(18)) flags.push("migration agent allowed");
  flags.push(bit(19) ? "DEBUG allowed" : "debug disallowed");
  if (bit(20)) flags.push("single socket only");
  if (bit(21)) flags.push("CXL allowed");
  if (bit(22)) flags.push("AES-256-XTS required");
  if (bit(23)) flags.push("RAPL disabled required");
  if (bit(24)) flags.push("ciphertext hiding required");
  if (bit(25)) flags.push("page swap disabled");
  return { abiMajor: Number((p >> 8n) & 0xffn), abiMinor: Number(p & 0xffn), flags };
}

function platformInfo(p: bigint): string {
  const names = [
    "SMT enabled",
    "TSME enabled",
    "ECC",
    "RAPL disabled",
    "ciphertext hiding",
    "alias check complete",
    "",
    "SEV-TIO",
  ];
  const set = names.filter((n, i) => n && ((p >> BigInt(i)) & 1n) === 1n);
  return `0x${p.toString(16)}${set.length ? ` (${set.join(", ")})` : ""}`;
}

function signingKey(keyInfo: number): string {
  const k = (keyInfo >> 2) & 7;
  const name = k === 0 ? "VCEK" : k === 1 ? "VLEK" : k === 7 ? "none" : `reserved (${k})`;
  return `${name}${keyInfo & 2 ? ", chip key masked" : ""}${keyInfo & 1 ? ", author key enabled" : ""}`;
}

const tcbText = (t: TcbVersion) =>
  `${t.fmc !== null ? `fmc ${t.fmc}, ` : ""}bootloader ${t.bootloader}, tee ${t.tee}, snp ${t.snp}, microcode ${t.microcode}`;

export function snpReportSections(r: SnpReport): Section[] {
  const pol = decodeSnpPolicy(r.policy);
  const rows: Row[] = [
    ["version", String(r.version)],
    ["guest SVN", String(r.guest_svn)],
    ["policy", `0x${r.policy.toString(16)} (ABI >= ${pol.abiMajor}.${pol.abiMinor}; ${pol.flags.join(", ")})`],
    ["VMPL", String(r.vmpl)],
    ["signature algorithm", r.sig_algo === 1 ? "1 (ECDSA P-384 SHA-384)" : String(r.sig_algo)],
    ["signing key", signingKey(r.key_info)],
    ["platform info", platformInfo(r.plat_info)],
    [
      "firmware",
      `current ${r.current.major}.${r.current.minor}.${r.current.build}, committed ${r.committed.major}.${r.committed.minor}.${r.committed.build}`,
    ],
    ...(r.cpuid_fam_id !== null
      ? ([
          [
            "CPUID",
            `family 0x${r.cpuid_fam_id.toString(16)} model 0x${r.cpuid_mod_id!.toString(16)} stepping 0x${r.cpuid_step!.toString(16)}`,
          ],
        ] as Row[])
      : []),
  ];
  return [
    { title: "SEV-SNP attestation report", rows },
    {
      title: "measurements",
      rows: [
        ["measurement", hex(r.measurement)],
        ["host data", hex(r.host_data)],
        ["family id", hex(r.family_id)],
        ["image id", hex(r.image_id)],
        ["ID key digest", isAllZero(r.id_key_digest) ? "none (launched without an ID block)" : hex(r.id_key_digest)],
        ["author key digest", isAllZero(r.author_key_digest) ? "none" : hex(r.author_key_digest)],
      ],
    },
    { title: "report data", rows: [["report_data", hex(r.report_data)]] },
    {
      title: "TCB",
      rows: [
        ["current", tcbText(r.current_tcb)],
        ["reported", tcbText(r.reported_tcb)],
        ["committed", tcbText(r.committed_tcb)],
        ["launch", tcbText(r.launch_tcb)],
        ...(r.launch_mit_vector !== null
          ? ([
              [
                "mitigation vectors",
                `launch 0x${r.launch_mit_vector.toString(16)}, current 0x${r.current_mit_vector!.toString(16)}`,
              ],
            ] as Row[])
          : []),
      ],
    },
    {
      title: "identity",
      rows: [
        ["chip id", hex(r.chip_id)],
        ["report id", hex(r.report_id)],
      ],
    },
  ];
}

export function inspectSnpReport(bytes: Uint8Array): Inspection {
  const r = decodeSnpReport(bytes);
  const warnings: string[] = [];
  if (((r.policy >> 19n) & 1n) === 1n) warnings.push("guest policy allows DEBUG");
  if (r.version < 3) warnings.push(`report version ${r.version}: trustee accepts only versions 3..5`);
  return {
    type: "snp-report",
    summary: `SEV-SNP attestation report v${r.version} (${bytes.length} bytes)`,
    sections: snpReportSections(r),
    warnings,
    json: { attestation_report: JSON.parse(snpEvidenceJsonText(r, null)).attestation_report },
  };
}

/** trustee's `snp` primary_evidence for this report, with no host certificates. */
export function snpTrusteeEvidence(bytes: Uint8Array): string {
  return snpEvidenceJsonText(decodeSnpReport(bytes), null) + "\n";
}

export function inspectSnpCerts(bytes: Uint8Array): Inspection {
  const entries = parseCertTable(bytes);
  const lines: string[] = [];
  const json = entries.map((e) => {
    let subject: string | undefined;
    let notAfter: string | undefined;
    try {
      const c = new X509Certificate(e.data);
      subject = c.subject.replace(/\n/g, ", ");
      notAfter = c.validTo;
    } catch {
      /* CRLs, or not DER: listed without a subject */
    }
    const sha = createHash("sha256").update(e.data).digest("hex");
    lines.push(
      `${certTypeName(e.type).padEnd(6)} ${e.guid} offset ${e.offset} length ${e.length}${subject ? ` — ${subject}` : ""}${notAfter ? ` (until ${notAfter})` : ""}`,
    );
    return { type: e.type, guid: e.guid, offset: e.offset, length: e.length, sha256: sha, subject: subject ?? null };
  });
  return {
    type: "snp-certs",
    summary: `SEV-SNP certificate table: ${entries.length} entr${entries.length === 1 ? "y" : "ies"}`,
    sections: [{ title: "entries", rows: [], lines }],
    warnings: entries.some((e) => e.type === "VCEK" || e.type === "VLEK")
      ? []
      : ["no VCEK or VLEK in the table (trustee requires one when a chain is sent)"],
    json: { entries: json },
  };
}
