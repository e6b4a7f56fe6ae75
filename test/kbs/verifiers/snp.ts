// trustee-style `snp` verifier for the test KBS (docs/spec/kbs-protocol.md §4.2). Checks what trustee's
// deps/verifier/src/snp does, offline:
//   - evidence shape {"attestation_report": sev serde struct, "cert_chain": null | [...]}, strictly;
//   - report version 3..=5 (REPORT_VERSION_MIN = 3), VMPL 0, sig_algo 1 (ECDSA P-384/SHA-384);
//   - the signing key: cert_chain must hold a VCEK or VLEK when present (else the configured
//     offline VCEK, trustee's vcek_sources); key_info SIGNING_KEY must match its kind;
//   - chain ARK (self-signed) → ASK → VEK against the CONFIGURED trust anchors — ARK/ASK in the
//     evidence are ignored, as trustee uses its built-in AMD chains;
//   - VCEK TCB extensions (blSPL/teeSPL/snpSPL/ucodeSPL, fmcSPL on Turin) == reported_tcb and the
//     hwID extension == chip_id;
//   - the ECDSA signature over the RE-ENCODED report bytes [0, 0x2A0);
//   - report_data == regularize_data(expected digest, 64) = digest ‖ zeros;
//   - host_data == init-data digest (regularized to 32) when init-data was given.
import { X509Certificate } from "node:crypto";
import * as fs from "node:fs";
import * as path from "node:path";
import { certTypeName } from "../../../platform/snp/certs.ts";
import { parseSnpEvidenceJson, type CertChainEntry } from "../../../platform/snp/json.ts";
import { encodeSnpReport, type SnpReport, type TcbVersion } from "../../../platform/snp/report.ts";
import { vekPublicKey, verifySnpReportSignature } from "../../../platform/snp/verify.ts";
import { bytesEqual, fitTo, hex } from "../../../platform/util/bytes.ts";
import { testPki } from "../../helpers/snp-fixtures.ts";
import type { TeeClaims, TeeVerifier, VerifyContext } from "./types.ts";
import { pemCertificateBlocks } from "../../../platform/util/pem.ts";

export interface SnpTrustAnchor {
  arkPem: string;
  askPem: string;
}

export interface SnpVerifyOptions {
  /** Trusted ARK/ASK pairs (trustee: built-in Milan/Genoa/Turin). */
  anchors: SnpTrustAnchor[];
  /** Offline VCEK (DER or PEM) for evidence with cert_chain null. */
  vcek?: Uint8Array | string;
  /** init-data digest to compare with host_data. */
  initDataDigest?: Uint8Array;
}

const REPORT_VERSION_MIN = 3;
const REPORT_VERSION_MAX = 5;

// ---- minimal DER walking for the VCEK's AMD extensions --------------------------------------------
interface Tlv {
  tag: number;
  body: Uint8Array;
  end: number;
}
function tlv(b: Uint8Array, at: number): Tlv {
  if (at + 2 > b.length) throw new Error("snp evidence: VEK certificate DER truncated");
  const tag = b[at]!;
  let len = b[at + 1]!;
  let p = at + 2;
  if (len & 0x80) {
    const n = len & 0x7f;
    if (n < 1 || n > 3 || p + n > b.length) throw new Error("snp evidence: VEK certificate DER length invalid");
    len = 0;
    for (let i = 0; i < n; i++) len = (len << 8) | b[p + i]!;
    p += n;
  }
  if (p + len > b.length) throw new Error("snp evidence: VEK certificate DER overruns");
  return { tag, body: b.subarray(p, p + len), end: p + len };
}
function children(b: Uint8Array): Tlv[] {
  const out: Tlv[] = [];
  for (let at = 0; at < b.length;) {
    const t = tlv(b, at);
    out.push(t);
    at = t.end;
  }
  return out;
}
function oidText(b: Uint8Array): string {
  const parts = [Math.floor(b[0]! / 40), b[0]! % 40];
  let v = 0;
  for (const x of b.subarray(1)) {
    v = v * 128 + (x & 0x7f);
    if (!(x & 0x80)) (parts.push(v), (v = 0));
  }
  return parts.join(".");
}
/** extension OID → extnValue bytes. */
export function certExtensions(der: Uint8Array): Map<string, Uint8Array> {
  const cert = tlv(der, 0);
  const tbs = children(cert.body)[0]!;
  const out = new Map<string, Uint8Array>();
  for (const f of children(tbs.body)) {
    if (f.tag !== 0xa3) continue;
    for (const ext of children(children(f.body)[0]!.body)) {
      const parts = children(ext.body);
      out.set(oidText(parts[0]!.body), parts[parts.length - 1]!.body);
    }
  }
  return out;
}
function derInt(v: Uint8Array | undefined, what: string): number {
  if (!v) throw new Error(`snp evidence: VCEK lacks the ${what} extension`);
  const t = tlv(v, 0);
  if (t.tag !== 0x02 || t.body.length > 4)
    throw new Error(`snp evidence: VCEK ${what} extension is not a small INTEGER`);
  return t.body.reduce((a, x) => a * 256 + x, 0);
}
function hwId(v: Uint8Array | undefined): Uint8Array {
  if (!v) throw new Error("snp evidence: VCEK lacks the hwID extension");
  if (v.length === 64 || v.length === 8) return v; // AMD KDS: the raw bytes (Turin: 8)
  const t = tlv(v, 0);
  if (t.tag === 0x04 && t.body.length === 64) return t.body; // wrapped in an OCTET STRING
  throw new Error(`snp evidence: VCEK hwID extension has ${v.length} bytes, expected 64`);
}

const AMD = "1.3.6.1.4.1.3704.1";
function checkVcekTcb(der: Uint8Array, r: SnpReport): void {
  const ext = certExtensions(der);
  const want: TcbVersion = r.reported_tcb;
  const got = {
    bootloader: derInt(ext.get(`${AMD}.3.1`), "blSPL"),
    tee: derInt(ext.get(`${AMD}.3.2`), "teeSPL"),
    snp: derInt(ext.get(`${AMD}.3.3`), "snpSPL"),
    microcode: derInt(ext.get(`${AMD}.3.8`), "ucodeSPL"),
  };
  for (const k of ["bootloader", "tee", "snp", "microcode"] as const)
    if (got[k] !== want[k]) throw new Error(`snp evidence: VCEK ${k} SPL ${got[k]} != reported_tcb.${k} ${want[k]}`);
  if (want.fmc !== null && derInt(ext.get(`${AMD}.3.9`), "fmcSPL") !== want.fmc)
    throw new Error("snp evidence: VCEK fmcSPL != reported_tcb.fmc");
  const id = hwId(ext.get(`${AMD}.4`));
  // Turin VCEKs carry an 8-byte hwID: it must equal the chip id's first 8 bytes (the rest are zero).
  const chip = id.length === 8 && want.fmc !== null ? r.chip_id.subarray(0, 8) : r.chip_id;
  if (!bytesEqual(id, chip))
    throw new Error(
      `snp evidence: VCEK hwID ${hex(id).slice(0, 16)}… != report chip_id ${hex(r.chip_id).slice(0, 16)}…`,
    );
}

function chainTo(vek: X509Certificate, anchors: SnpTrustAnchor[]): void {
  for (const a of anchors) {
    const ark = new X509Certificate(a.arkPem);
    const ask = new X509Certificate(a.askPem);
    if (ark.verify(ark.publicKey) && ask.verify(ark.publicKey) && vek.verify(ask.publicKey)) return;
  }
  throw new Error("snp evidence: the VCEK/VLEK does not chain to a trusted ASK/ARK");
}

function pickVek(chain: CertChainEntry[] | null, opts: SnpVerifyOptions): { der: Uint8Array; kind: "VCEK" | "VLEK" } {
  if (chain) {
    const e = chain.find((c) => c.cert_type === "VCEK" || c.cert_type === "VLEK");
    if (!e)
      throw new Error(
        `snp evidence: If a cert chain is provided, it must include a VCEK/VLEK (got ${chain.map((c) => certTypeName(c.cert_type)).join(", ")})`,
      );
    return { der: e.data, kind: e.cert_type as "VCEK" | "VLEK" };
  }
  if (opts.vcek === undefined)
    throw new Error("snp evidence: cert_chain is null and no offline VCEK is configured (trustee would query AMD KDS)");
  return {
    der: new Uint8Array(new X509Certificate(typeof opts.vcek === "string" ? opts.vcek : Buffer.from(opts.vcek)).raw),
    kind: "VCEK",
  };
}

export function claimsOf(r: SnpReport): TeeClaims {
  const p = r.policy;
  const bit = (v: bigint, n: number) => ((v >> BigInt(n)) & 1n) === 1n;
  return {
    measurement: hex(r.measurement),
    report_data: hex(r.report_data),
    init_data: hex(r.host_data),
    chip_id: hex(r.chip_id),
    policy_abi_major: String((p >> 8n) & 0xffn),
    policy_abi_minor: String(p & 0xffn),
    policy_smt_allowed: bit(p, 16),
    policy_migrate_ma: bit(p, 18),
    policy_debug_allowed: bit(p, 19),
    policy_single_socket: bit(p, 20),
    reported_tcb_bootloader: String(r.reported_tcb.bootloader),
    reported_tcb_tee: String(r.reported_tcb.tee),
    reported_tcb_snp: String(r.reported_tcb.snp),
    reported_tcb_microcode: String(r.reported_tcb.microcode),
    platform_smt_enabled: bit(r.plat_info, 0),
    platform_tsme_enabled: bit(r.plat_info, 1),
  };
}

/** Verify `snp` primary evidence the way trustee does; returns trustee-like claims or throws. */
export function verifySnpEvidence(evidence: unknown, expectedDigest: Uint8Array, opts: SnpVerifyOptions): TeeClaims {
  const { report, certChain } = parseSnpEvidenceJson(evidence);
  if (report.version < REPORT_VERSION_MIN || report.version > REPORT_VERSION_MAX)
    throw new Error(
      `snp evidence: report version ${report.version} is not supported (need ${REPORT_VERSION_MIN}..${REPORT_VERSION_MAX})`,
    );
  if (report.vmpl !== 0) throw new Error(`snp evidence: VMPL ${report.vmpl}, expected 0`);
  if (report.sig_algo !== 1) throw new Error(`snp evidence: sig_algo ${report.sig_algo} is not ECDSA P-384/SHA-384`);
  const vek = pickVek(certChain, opts);
  const signingKey = (report.key_info >> 2) & 7;
  if ((vek.kind === "VCEK" && signingKey !== 0) || (vek.kind === "VLEK" && signingKey !== 1))
    throw new Error(`snp evidence: report says SIGNING_KEY ${signingKey} but the certificate is a ${vek.kind}`);
  const x509 = new X509Certificate(Buffer.from(vek.der));
  chainTo(x509, opts.anchors);
  if (vek.kind === "VCEK") checkVcekTcb(vek.der, report);
  const raw = encodeSnpReport(report);
  if (!verifySnpReportSignature(raw, vekPublicKey(vek.der)))
    throw new Error("snp evidence: report signature does not verify with the VCEK/VLEK");
  const want = fitTo(expectedDigest, 64);
  if (!bytesEqual(report.report_data, want))
    throw new Error(`snp evidence: report_data ${hex(report.report_data)} != expected ${hex(want)}`);
  if (opts.initDataDigest && !bytesEqual(report.host_data, fitTo(opts.initDataDigest, 32)))
    throw new Error(`snp evidence: host_data ${hex(report.host_data)} != init-data digest`);
  return claimsOf(report);
}

/** A verifier for the test KBS with explicit trust anchors. */
export function makeSnpVerifier(base: Omit<SnpVerifyOptions, "initDataDigest">): TeeVerifier {
  return {
    tee: "snp",
    verify(evidence: unknown, expected: Uint8Array, ctx: VerifyContext) {
      return verifySnpEvidence(evidence, expected, {
        ...base,
        ...(ctx.initData ? { initDataDigest: ctx.initData.digest } : {}),
      });
    },
  };
}

/** AMD's real Milan/Genoa ARK+ASK (trustee's built-ins, from test/fixtures/snp). */
export function amdAnchors(): SnpTrustAnchor[] {
  const dir = path.resolve(import.meta.dirname, "../../fixtures/snp");
  return ["trustee-milan_ask_ark_asvk.pem", "trustee-genoa_ask_ark_asvk.pem"].map((f) => {
    const pems = pemCertificateBlocks(fs.readFileSync(path.join(dir, f), "utf8"));
    return { askPem: pems[0]!, arkPem: pems[1]! }; // file order: ASK, ARK, ASVK
  });
}

/** Registry default: AMD's anchors plus this process's test PKI (test/helpers/snp-fixtures.ts). */
export const verifier: TeeVerifier = {
  tee: "snp",
  verify(evidence, expected, ctx) {
    const pki = testPki();
    return makeSnpVerifier({ anchors: [{ arkPem: pki.arkPem, askPem: pki.askPem }, ...amdAnchors()] }).verify(
      evidence,
      expected,
      ctx,
    );
  },
};
