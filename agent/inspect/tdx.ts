// `inspect` for TDX quotes (v4/v5) and raw TDREPORTs.
import { hex } from "../../platform/util/bytes.ts";
import { decodeTdAttributes, INTEL_QE_VENDOR_ID, parseTdxQuote, type TdAttributes } from "../../platform/tdx/quote.ts";
import { pckChainPem, verifyQeBinding, verifyQuoteSignature } from "../../platform/tdx/signature.ts";
import { trusteeQuoteClaims } from "../../platform/tdx/claims.ts";
import { parseTdReport, type TdReport } from "../../platform/tdx/tdreport.ts";
import { setFlagLabels, type Inspection, type Row, type Section } from "./model.ts";

const TD_ATTRIBUTE_LABELS: Partial<Record<keyof TdAttributes, string>> = {
  debug: "DEBUG",
  septVeDisable: "SEPT_VE_DISABLE",
  protectionKeys: "PKS",
  keyLocker: "KL",
  perfmon: "PERFMON",
};

function tdAttributesText(attr: Uint8Array): string {
  const a = decodeTdAttributes(attr);
  const set = setFlagLabels(a, TD_ATTRIBUTE_LABELS);
  return `${hex(attr)} (${set.length ? set.join(", ") : "none set"})${a.debug ? " — DEBUG TD: its memory is readable by the host" : ""}`;
}

function measurementRows(m: {
  mrTd: Uint8Array;
  rtmrs: Uint8Array[];
  mrConfigId: Uint8Array;
  mrOwner: Uint8Array;
  mrOwnerConfig: Uint8Array;
}): Row[] {
  return [
    ["MRTD", hex(m.mrTd)],
    ...m.rtmrs.map((r, i): Row => [`RTMR${i}`, hex(r)]),
    ["MRCONFIGID", hex(m.mrConfigId)],
    ["MROWNER", hex(m.mrOwner)],
    ["MROWNERCONFIG", hex(m.mrOwnerConfig)],
  ];
}

export function inspectTdxQuote(bytes: Uint8Array): Inspection {
  const q = parseTdxQuote(bytes);
  const b = q.body;
  const sigOk = verifyQuoteSignature(q);
  const qeOk = verifyQeBinding(q);
  const chain = pckChainPem(q);
  const warnings: string[] = [];
  if (!sigOk) warnings.push("the quote signature does NOT verify with the attestation key it carries");
  if (qeOk === false) warnings.push("the QE report does NOT bind the attestation key");
  if (decodeTdAttributes(b.tdAttributes).debug) warnings.push("TD attributes have DEBUG set");
  const vendor = hex(q.header.qeVendorId);
  const sections: Section[] = [
    {
      title: "header",
      rows: [
        [
          "version",
          `${q.header.version}${q.header.version === 5 ? ` (body type ${q.bodyType} = TD ${q.bodyType === 3 ? "1.5" : "1.0"})` : ""}`,
        ],
        ["attestation key type", `${q.header.attKeyType} (ECDSA-P256)`],
        ["TEE type", `0x${q.header.teeType.toString(16)} (TDX)`],
        ["QE vendor id", `${vendor}${vendor === INTEL_QE_VENDOR_ID ? " (Intel)" : ""}`],
        ["user data", hex(q.header.userData)],
      ],
    },
    {
      title: "TD measurements",
      rows: [
        ...measurementRows({ ...b, rtmrs: b.rtmrs }),
        ...(b.mrServiceTd ? ([["MRSERVICETD", hex(b.mrServiceTd)]] as Row[]) : []),
      ],
    },
    {
      title: "TD configuration and TCB",
      rows: [
        ["TD attributes", tdAttributesText(b.tdAttributes)],
        ["XFAM", hex(b.xfam)],
        ["TEE TCB SVN", hex(b.teeTcbSvn)],
        ...(b.teeTcbSvn2 ? ([["TEE TCB SVN2", hex(b.teeTcbSvn2)]] as Row[]) : []),
        ["MRSEAM", hex(b.mrSeam)],
        ["MRSIGNERSEAM", hex(b.mrSignerSeam)],
        ["SEAM attributes", hex(b.seamAttributes)],
      ],
    },
    { title: "report data", rows: [["REPORTDATA", hex(b.reportData)]] },
    {
      title: "signature",
      rows: [
        ["signed bytes", `${q.signedBytes.length}`],
        ["signature data", `${q.sigDataLen} bytes, certification data type ${q.signatureData.certType}`],
        ["attestation key", hex(q.signatureData.attestationKey)],
        ["quote signature", sigOk ? "valid (ECDSA-P256 by the attestation key)" : "INVALID"],
        ["QE binding", qeOk === undefined ? "no QE report" : qeOk ? "valid" : "INVALID"],
        ["PCK chain", chain.length ? `${chain.length} PEM certificate(s) (not checked against Intel here)` : "absent"],
        ["trailing bytes", `${q.trailing} (ignored)`],
      ],
    },
  ];
  return {
    type: "tdx-quote",
    summary: `TDX quote v${q.header.version}, ${q.length} bytes${q.trailing ? ` + ${q.trailing} trailing` : ""}`,
    sections,
    warnings,
    json: {
      claims: trusteeQuoteClaims(q),
      body_type: q.bodyType,
      signature: {
        valid: sigOk,
        qe_binding: qeOk ?? null,
        attestation_key: hex(q.signatureData.attestationKey),
        pck_chain_certs: chain.length,
      },
      length: q.length,
      trailing: q.trailing,
    },
  };
}

export function tdReportSections(t: TdReport): Section[] {
  return [
    {
      title: "TDREPORT",
      rows: [
        ["type", `0x${t.reportType.type.toString(16)} subtype ${t.reportType.subtype} version ${t.reportType.version}`],
        ["CPUSVN", hex(t.cpuSvn)],
        ["REPORTDATA", hex(t.reportData)],
        ["TEE TCB SVN", hex(t.teeTcbInfo.teeTcbSvn)],
        ["MRSEAM", hex(t.teeTcbInfo.mrSeam)],
        ["TD attributes", tdAttributesText(t.tdInfo.attributes)],
        ["XFAM", hex(t.tdInfo.xfam)],
        ...measurementRows(t.tdInfo),
        ["SERVTD_HASH", hex(t.tdInfo.servtdHash)],
      ],
    },
  ];
}

export function tdReportJson(t: TdReport): Record<string, unknown> {
  return {
    report_type: t.reportType,
    cpusvn: hex(t.cpuSvn),
    report_data: hex(t.reportData),
    tee_tcb_svn: hex(t.teeTcbInfo.teeTcbSvn),
    mr_seam: hex(t.teeTcbInfo.mrSeam),
    td_attributes: hex(t.tdInfo.attributes),
    xfam: hex(t.tdInfo.xfam),
    mr_td: hex(t.tdInfo.mrTd),
    mr_config_id: hex(t.tdInfo.mrConfigId),
    mr_owner: hex(t.tdInfo.mrOwner),
    mr_owner_config: hex(t.tdInfo.mrOwnerConfig),
    rtmrs: t.tdInfo.rtmrs.map(hex),
  };
}

export function inspectTdReport(bytes: Uint8Array): Inspection {
  const t = parseTdReport(bytes);
  return {
    type: "tdx-report",
    summary: "TDX TDREPORT (1024 bytes, MAC'ed by the CPU, not signed)",
    sections: tdReportSections(t),
    warnings: [],
    json: { tdreport: tdReportJson(t) },
  };
}
