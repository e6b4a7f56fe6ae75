// trustee's JSON form of SNP evidence (docs/spec/kbs-protocol.md §4.2): the virtee `sev` serde struct, named
// fields in struct order, byte arrays as arrays of integers, u64 as JSON numbers. Pure.
//
// u64 fields (policy, plat_info, mit vectors) may exceed 2^53 on a hostile or future report; JS
// numbers would silently round them and break the signature at the verifier. So the text form is
// emitted here digit-exact from bigint, and the value form uses JSON.rawJSON (bun) for such values
// or refuses when the runtime cannot represent them exactly.
import { ParseError } from "../util/errors.ts";
import type { CertType } from "./certs.ts";
import type { FirmwareVersion, SnpReport, TcbVersion } from "./report.ts";

/** A JSON tree whose integers may be bigint and byte strings Uint8Array (→ arrays of ints). */
type Node = null | number | bigint | string | Uint8Array | Node[] | { [k: string]: Node };

export interface CertChainEntry {
  cert_type: CertType;
  data: Uint8Array;
}

const tcbNode = (t: TcbVersion): Node => ({
  fmc: t.fmc,
  bootloader: t.bootloader,
  tee: t.tee,
  snp: t.snp,
  microcode: t.microcode,
});
const fwNode = (v: FirmwareVersion): Node => ({ major: v.major, minor: v.minor, build: v.build });

function reportNode(r: SnpReport): Node {
  return {
    version: r.version,
    guest_svn: r.guest_svn,
    policy: r.policy,
    family_id: r.family_id,
    image_id: r.image_id,
    vmpl: r.vmpl,
    sig_algo: r.sig_algo,
    current_tcb: tcbNode(r.current_tcb),
    plat_info: r.plat_info,
    key_info: r.key_info,
    report_data: r.report_data,
    measurement: r.measurement,
    host_data: r.host_data,
    id_key_digest: r.id_key_digest,
    author_key_digest: r.author_key_digest,
    report_id: r.report_id,
    report_id_ma: r.report_id_ma,
    reported_tcb: tcbNode(r.reported_tcb),
    cpuid_fam_id: r.cpuid_fam_id,
    cpuid_mod_id: r.cpuid_mod_id,
    cpuid_step: r.cpuid_step,
    chip_id: r.chip_id,
    committed_tcb: tcbNode(r.committed_tcb),
    current: fwNode(r.current),
    committed: fwNode(r.committed),
    launch_tcb: tcbNode(r.launch_tcb),
    launch_mit_vector: r.launch_mit_vector,
    current_mit_vector: r.current_mit_vector,
    signature: { r: r.signature.r, s: r.signature.s },
  };
}

function evidenceNode(r: SnpReport, certs: CertChainEntry[] | null): Node {
  // The sev crate yields None for an empty table: send null, never [] (docs/spec/kbs-protocol.md §4.2).
  const chain = certs && certs.length > 0 ? certs.map((c) => ({ cert_type: c.cert_type as Node, data: c.data })) : null;
  return { attestation_report: reportNode(r), cert_chain: chain };
}

function toText(n: Node): string {
  if (n === null) return "null";
  if (typeof n === "bigint") return n.toString(10);
  if (typeof n === "number") return JSON.stringify(n);
  if (typeof n === "string") return JSON.stringify(n);
  if (n instanceof Uint8Array) return `[${Array.from(n).join(",")}]`;
  if (Array.isArray(n)) return `[${n.map(toText).join(",")}]`;
  return `{${Object.entries(n)
    .map(([k, v]) => `${JSON.stringify(k)}:${toText(v)}`)
    .join(",")}}`;
}

type RawJsonFn = (text: string) => unknown;
const rawJSON: RawJsonFn | undefined = (JSON as unknown as { rawJSON?: RawJsonFn }).rawJSON;

function toValue(n: Node, where: string): unknown {
  if (typeof n === "bigint") {
    if (n <= BigInt(Number.MAX_SAFE_INTEGER)) return Number(n);
    if (rawJSON) return rawJSON(n.toString(10));
    throw new ParseError(
      "SNP evidence JSON",
      where,
      0,
      `value ${n} exceeds 2^53 and this runtime cannot emit it exactly (use snpEvidenceJsonText)`,
    );
  }
  if (n instanceof Uint8Array) return Array.from(n);
  if (Array.isArray(n)) return n.map((x, i) => toValue(x, `${where}[${i}]`));
  if (n !== null && typeof n === "object")
    return Object.fromEntries(Object.entries(n).map(([k, v]) => [k, toValue(v, where ? `${where}.${k}` : k)]));
  return n;
}

/** Exact JSON text of a report (u64 digit-exact). */
export function snpReportToJsonText(r: SnpReport): string {
  return toText(reportNode(r));
}

/** The `snp` primary_evidence as JSON text, byte-identical in layout to what the sev crate emits. */
export function snpEvidenceJsonText(r: SnpReport, certs: CertChainEntry[] | null): string {
  return toText(evidenceNode(r, certs));
}

/** The `snp` primary_evidence as a JS value for JSON.stringify (big u64 via JSON.rawJSON). */
export function snpEvidenceJsonValue(r: SnpReport, certs: CertChainEntry[] | null): unknown {
  return toValue(evidenceNode(r, certs), "");
}

// ---- JSON → report (the verifier's direction) ------------------------------------------------------
const STRUCT = "SNP evidence JSON";

function fail(field: string, problem: string): never {
  throw new ParseError(STRUCT, field, 0, problem);
}

function obj(v: unknown, field: string): Record<string, unknown> {
  if (v === null || typeof v !== "object" || Array.isArray(v)) fail(field, "must be a JSON object");
  return v as Record<string, unknown>;
}

function uint(v: unknown, bits: 8 | 32, field: string): number {
  const max = bits === 8 ? 0xff : 0xffffffff;
  if (typeof v === "bigint" && v >= 0n && v <= BigInt(max)) return Number(v);
  if (typeof v !== "number" || !Number.isInteger(v) || v < 0 || v > max)
    fail(field, `must be an unsigned ${bits}-bit integer`);
  return v;
}

function u64(v: unknown, field: string): bigint {
  if (typeof v === "bigint") {
    if (v < 0n || v > 0xffffffffffffffffn) fail(field, "must be an unsigned 64-bit integer");
    return v;
  }
  if (typeof v !== "number" || !Number.isInteger(v) || v < 0) fail(field, "must be an unsigned 64-bit integer");
  // A number above 2^53 has already been rounded by whoever parsed the JSON: refuse, never guess.
  if (!Number.isSafeInteger(v)) fail(field, "exceeds 2^53: parse the JSON with a bigint-aware parser");
  return BigInt(v);
}

function optional<T>(o: Record<string, unknown>, key: string, read: (v: unknown, f: string) => T): T | null {
  const v = o[key];
  return v === undefined || v === null ? null : read(v, key);
}

export function byteArray(v: unknown, len: number, field: string): Uint8Array {
  if (!Array.isArray(v)) fail(field, `must be an array of ${len} byte values`);
  if (v.length !== len) fail(field, `must have exactly ${len} elements, has ${v.length}`);
  const out = new Uint8Array(len);
  v.forEach((x, i) => (out[i] = uint(x, 8, `${field}[${i}]`)));
  return out;
}

function tcb(v: unknown, field: string): TcbVersion {
  const o = obj(v, field);
  const fmc = optional(o, "fmc", (x) => uint(x, 8, `${field}.fmc`));
  return {
    fmc,
    bootloader: uint(o.bootloader, 8, `${field}.bootloader`),
    tee: uint(o.tee, 8, `${field}.tee`),
    snp: uint(o.snp, 8, `${field}.snp`),
    microcode: uint(o.microcode, 8, `${field}.microcode`),
  };
}

function fw(v: unknown, field: string): FirmwareVersion {
  const o = obj(v, field);
  return {
    major: uint(o.major, 8, `${field}.major`),
    minor: uint(o.minor, 8, `${field}.minor`),
    build: uint(o.build, 8, `${field}.build`),
  };
}

/** Strictly read trustee's report struct (missing Option fields read as null, like serde). */
export function snpReportFromJson(v: unknown): SnpReport {
  const o = obj(v, "attestation_report");
  const sig = obj(o.signature, "signature");
  return {
    version: uint(o.version, 32, "version"),
    guest_svn: uint(o.guest_svn, 32, "guest_svn"),
    policy: u64(o.policy, "policy"),
    family_id: byteArray(o.family_id, 16, "family_id"),
    image_id: byteArray(o.image_id, 16, "image_id"),
    vmpl: uint(o.vmpl, 32, "vmpl"),
    sig_algo: uint(o.sig_algo, 32, "sig_algo"),
    current_tcb: tcb(o.current_tcb, "current_tcb"),
    plat_info: u64(o.plat_info, "plat_info"),
    key_info: uint(o.key_info, 32, "key_info"),
    report_data: byteArray(o.report_data, 64, "report_data"),
    measurement: byteArray(o.measurement, 48, "measurement"),
    host_data: byteArray(o.host_data, 32, "host_data"),
    id_key_digest: byteArray(o.id_key_digest, 48, "id_key_digest"),
    author_key_digest: byteArray(o.author_key_digest, 48, "author_key_digest"),
    report_id: byteArray(o.report_id, 32, "report_id"),
    report_id_ma: byteArray(o.report_id_ma, 32, "report_id_ma"),
    reported_tcb: tcb(o.reported_tcb, "reported_tcb"),
    cpuid_fam_id: optional(o, "cpuid_fam_id", (x, f) => uint(x, 8, f)),
    cpuid_mod_id: optional(o, "cpuid_mod_id", (x, f) => uint(x, 8, f)),
    cpuid_step: optional(o, "cpuid_step", (x, f) => uint(x, 8, f)),
    chip_id: byteArray(o.chip_id, 64, "chip_id"),
    committed_tcb: tcb(o.committed_tcb, "committed_tcb"),
    current: fw(o.current, "current"),
    committed: fw(o.committed, "committed"),
    launch_tcb: tcb(o.launch_tcb, "launch_tcb"),
    launch_mit_vector: optional(o, "launch_mit_vector", u64),
    current_mit_vector: optional(o, "current_mit_vector", u64),
    signature: { r: byteArray(sig.r, 72, "signature.r"), s: byteArray(sig.s, 72, "signature.s") },
  };
}

const NAMED_CERT_TYPES = ["ARK", "ASK", "VCEK", "VLEK", "CRL", "Empty"] as const;
const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
/** Each certificate in evidence is bounded (AMD certificates are < 2 KiB). */
export const MAX_EVIDENCE_CERT_BYTES = 64 * 1024;
export const MAX_EVIDENCE_CERTS = 16;

function certType(v: unknown, field: string): CertType {
  if (typeof v === "string" && (NAMED_CERT_TYPES as readonly string[]).includes(v)) return v as CertType;
  if (v !== null && typeof v === "object" && !Array.isArray(v)) {
    const keys = Object.keys(v);
    const other = (v as Record<string, unknown>).OTHER;
    if (keys.length === 1 && typeof other === "string" && UUID_RE.test(other)) return { OTHER: other.toLowerCase() };
  }
  fail(field, `unknown cert_type ${JSON.stringify(v)?.slice(0, 60)}`);
}

/** Read `{"attestation_report":…, "cert_chain": null | [...]}`. */
export function parseSnpEvidenceJson(v: unknown): { report: SnpReport; certChain: CertChainEntry[] | null } {
  const o = obj(v, "evidence");
  const report = snpReportFromJson(o.attestation_report);
  if (o.cert_chain === null || o.cert_chain === undefined) return { report, certChain: null };
  if (!Array.isArray(o.cert_chain)) fail("cert_chain", "must be null or an array");
  if (o.cert_chain.length > MAX_EVIDENCE_CERTS) fail("cert_chain", `more than ${MAX_EVIDENCE_CERTS} entries`);
  const certChain = o.cert_chain.map((e, i) => {
    const eo = obj(e, `cert_chain[${i}]`);
    const data = eo.data;
    if (!Array.isArray(data) || data.length > MAX_EVIDENCE_CERT_BYTES)
      fail(`cert_chain[${i}].data`, `must be an array of at most ${MAX_EVIDENCE_CERT_BYTES} bytes`);
    return {
      cert_type: certType(eo.cert_type, `cert_chain[${i}].cert_type`),
      data: byteArray(data, data.length, `cert_chain[${i}].data`),
    };
  });
  return { report, certChain };
}
