// `inspect` for SEV-SNP attestation reports and GHCB certificate tables. Decoding is the SNP
// codecs' (platform/snp); this file only explains the fields to people (SEV-SNP ABI spec tables).
import { createHash, X509Certificate } from "node:crypto";
import { hex, isAllZero } from "../../platform/util/bytes.ts";
import {
  decodeSnpReport,
  guestPolicy,
  keyInfo,
  platformInfo,
  type PlatformInfo,
  type SnpReport,
  type TcbVersion,
} from "../../platform/snp/report.ts";
import { snpEvidenceJsonText } from "../../platform/snp/json.ts";
import { certTypeName, parseCertTable } from "../../platform/snp/certs.ts";
import { setFlagLabels, type Inspection, type Row, type Section } from "./model.ts";

/** The guest policy for people: ABI floor and the flags that matter to an owner. */
function describeSnpPolicy(p: bigint): string {
  const g = guestPolicy(p);
  const flags = [
    g.smtAllowed ? "SMT allowed" : "SMT not allowed",
    g.reservedBit17 ? "" : "reserved bit 17 clear (must be 1)",
    g.migrateMa ? "migration agent allowed" : "",
    g.debugAllowed ? "DEBUG allowed" : "debug disallowed",
    g.singleSocket ? "single socket only" : "",
    g.cxlAllowed ? "CXL allowed" : "",
    g.memAes256Xts ? "AES-256-XTS required" : "",
    g.raplDisabled ? "RAPL disabled required" : "",
    g.ciphertextHiding ? "ciphertext hiding required" : "",
    g.pageSwapDisabled ? "page swap disabled" : "",
  ].filter(Boolean);
  return `0x${p.toString(16)} (ABI >= ${g.abiMajor}.${g.abiMinor}; ${flags.join(", ")})`;
}

const PLATFORM_INFO_LABELS: Record<keyof PlatformInfo, string> = {
  smtEnabled: "SMT enabled",
  tsmeEnabled: "TSME enabled",
  eccEnabled: "ECC",
  raplDisabled: "RAPL disabled",
  ciphertextHidingEnabled: "ciphertext hiding",
  aliasCheckComplete: "alias check complete",
  tioEnabled: "SEV-TIO",
};

function describePlatformInfo(p: bigint): string {
  const set = setFlagLabels(platformInfo(p), PLATFORM_INFO_LABELS);
  return `0x${p.toString(16)}${set.length ? ` (${set.join(", ")})` : ""}`;
}

function describeKeyInfo(k: number): string {
  const i = keyInfo(k);
  const name = i.signingKey === "reserved" ? `reserved (${i.signingKeyField})` : i.signingKey;
  return `${name}${i.maskChipKey ? ", chip key masked" : ""}${i.authorKeyEnabled ? ", author key enabled" : ""}`;
}

const tcbText = (t: TcbVersion) =>
  `${t.fmc !== null ? `fmc ${t.fmc}, ` : ""}bootloader ${t.bootloader}, tee ${t.tee}, snp ${t.snp}, microcode ${t.microcode}`;

export function snpReportSections(r: SnpReport): Section[] {
  const rows: Row[] = [
    ["version", String(r.version)],
    ["guest SVN", String(r.guest_svn)],
    ["policy", describeSnpPolicy(r.policy)],
    ["VMPL", String(r.vmpl)],
    ["signature algorithm", r.sig_algo === 1 ? "1 (ECDSA P-384 SHA-384)" : String(r.sig_algo)],
    ["signing key", describeKeyInfo(r.key_info)],
    ["platform info", describePlatformInfo(r.plat_info)],
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
  if (guestPolicy(r.policy).debugAllowed) warnings.push("guest policy allows DEBUG");
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
