// SEV-SNP ATTESTATION_REPORT codec (docs/spec/snp-abi.md §2): the 1184-byte firmware structure ↔ a typed
// value that mirrors trustee's JSON form (virtee `sev` serde struct, docs/spec/kbs-protocol.md §4.2). Pure.
//
// Round-trip rule: trustee re-encodes the JSON to bytes and checks the signature over 0..0x2A0, with
// reserved bytes written as zero. A report whose signed range has non-zero reserved bytes (or TCB
// padding) cannot survive that trip, so decoding refuses it here with the exact offset, instead of
// letting the KBS fail with "bad signature". The unsigned tail after R/S (0x330..0x49F) is ignored.
import { isAllZero } from "../util/bytes.ts";
import { ParseError } from "../util/errors.ts";
import { ByteReader } from "../util/reader.ts";

export const SNP_REPORT_SIZE = 0x4a0;
/** ECDSA-P384/SHA-384 covers bytes [0, 0x2A0). */
export const SNP_SIGNED_SIZE = 0x2a0;
export const SNP_SIG_COMPONENT_SIZE = 72;
const STRUCT = "SNP attestation report";

export interface TcbVersion {
  /** Turin and later only; null on Milan/Genoa. */
  fmc: number | null;
  bootloader: number;
  tee: number;
  snp: number;
  microcode: number;
}

export interface FirmwareVersion {
  major: number;
  minor: number;
  build: number;
}

export interface SnpReport {
  version: number;
  guest_svn: number;
  policy: bigint;
  family_id: Uint8Array;
  image_id: Uint8Array;
  vmpl: number;
  sig_algo: number;
  current_tcb: TcbVersion;
  plat_info: bigint;
  key_info: number;
  report_data: Uint8Array;
  measurement: Uint8Array;
  host_data: Uint8Array;
  id_key_digest: Uint8Array;
  author_key_digest: Uint8Array;
  report_id: Uint8Array;
  report_id_ma: Uint8Array;
  reported_tcb: TcbVersion;
  /** v3+ only; null for v2. */
  cpuid_fam_id: number | null;
  cpuid_mod_id: number | null;
  cpuid_step: number | null;
  chip_id: Uint8Array;
  committed_tcb: TcbVersion;
  current: FirmwareVersion;
  committed: FirmwareVersion;
  launch_tcb: TcbVersion;
  /** v5+ only; null before. */
  launch_mit_vector: bigint | null;
  current_mit_vector: bigint | null;
  /** R and S, little-endian, zero-padded to 72 bytes each (as in the report). */
  signature: { r: Uint8Array; s: Uint8Array };
}

/** Which report layout a version number uses (virtee: 2 → V2, 3 and 4 → V3, 5 → V5). */
export type ReportLayout = "v2" | "v3" | "v5";
export function reportLayout(version: number): ReportLayout | undefined {
  if (version === 2) return "v2";
  if (version === 3 || version === 4) return "v3";
  if (version === 5) return "v5";
  return undefined;
}

export type CpuGeneration = "milan" | "genoa" | "turin";
export type TcbLayout = "legacy" | "turin";

/** CPU generation from CPUID family/model (go-sev-guest / virtee ranges, docs/spec/snp-abi.md §2.4). */
export function generationFromCpuid(fam: number, mod: number): CpuGeneration | undefined {
  if (fam === 0x19 && mod <= 0x0f) return "milan";
  if (fam === 0x19 && ((mod >= 0x10 && mod <= 0x1f) || (mod >= 0xa0 && mod <= 0xaf))) return "genoa";
  if (fam === 0x1a && mod <= 0x11) return "turin";
  return undefined;
}

/**
 * The TCB_VERSION byte layout of a report: v3+ from CPUID, v2 from virtee's chip-id heuristic
 * (bytes 8..63 zero ⇒ Turin-like). Throws when it cannot be decided (masked chip id on v2, unknown CPU).
 */
export function tcbLayoutOf(
  version: number,
  fam: number | null,
  mod: number | null,
  chipId: Uint8Array,
  fail: (field: string, problem: string) => never,
): TcbLayout {
  if (reportLayout(version) === "v2") {
    if (isAllZero(chipId))
      fail(
        "chip_id",
        "v2 report with a masked (all-zero) CHIP_ID: the TCB layout (Milan/Genoa vs Turin) cannot be determined",
      );
    return isAllZero(chipId.subarray(8)) ? "turin" : "legacy";
  }
  if (fam === null || mod === null) fail("cpuid_fam_id", "v3+ report without CPUID family/model");
  const gen = generationFromCpuid(fam, mod);
  if (gen === undefined)
    fail("cpuid_fam_id", `unknown CPU family 0x${fam.toString(16)} model 0x${mod.toString(16)}: TCB layout unknown`);
  return gen === "turin" ? "turin" : "legacy";
}

// ---- bytes → report --------------------------------------------------------------------------------
function zeroRun(r: ByteReader, n: number, field: string): void {
  const at = r.offset;
  const b = r.bytes(n, field);
  for (let i = 0; i < b.length; i++)
    if (b[i] !== 0)
      r.fail(
        field,
        `reserved byte at +${i} is 0x${b[i]!.toString(16)}, must be zero (trustee re-encodes it as zero, so the signature would not verify)`,
        at + i,
      );
}

function decodeTcb(raw: Uint8Array, at: number, layout: TcbLayout, field: string): TcbVersion {
  const nonZero = (idx: number[]) => idx.find((i) => raw[i] !== 0);
  if (layout === "legacy") {
    const bad = nonZero([2, 3, 4, 5]);
    if (bad !== undefined)
      throw new ParseError(STRUCT, field, at + bad, "reserved TCB byte is not zero (Milan/Genoa layout)");
    return { fmc: null, bootloader: raw[0]!, tee: raw[1]!, snp: raw[6]!, microcode: raw[7]! };
  }
  const bad = nonZero([4, 5, 6]);
  if (bad !== undefined) throw new ParseError(STRUCT, field, at + bad, "reserved TCB byte is not zero (Turin layout)");
  return { fmc: raw[0]!, bootloader: raw[1]!, tee: raw[2]!, snp: raw[3]!, microcode: raw[7]! };
}

function copy(b: Uint8Array): Uint8Array {
  return new Uint8Array(b);
}

/** Decode and validate a raw report (exactly 1184 bytes). */
export function decodeSnpReport(raw: Uint8Array): SnpReport {
  if (raw.length !== SNP_REPORT_SIZE)
    throw new ParseError(STRUCT, "length", 0, `expected ${SNP_REPORT_SIZE} bytes, got ${raw.length}`);
  const r = new ByteReader(raw, STRUCT);
  const version = r.u32le("version");
  const layout = reportLayout(version);
  if (layout === undefined) r.fail("version", `unsupported report version ${version} (supported: 2, 3, 4, 5)`, 0);
  // Layout decisions need fields further on; read them first.
  const chipId = raw.subarray(0x1a0, 0x1e0);
  const fam = layout === "v2" ? null : raw[0x188]!;
  const mod = layout === "v2" ? null : raw[0x189]!;
  const tcb = tcbLayoutOf(version, fam, mod, chipId, (field, problem) =>
    r.fail(field, problem, field === "chip_id" ? 0x1a0 : 0x188),
  );
  const tcbAt = (field: string): TcbVersion => {
    const at = r.offset;
    return decodeTcb(r.bytes(8, field), at, tcb, field);
  };

  const guest_svn = r.u32le("guest_svn");
  const policy = r.u64le("policy");
  const family_id = copy(r.bytes(16, "family_id"));
  const image_id = copy(r.bytes(16, "image_id"));
  const vmpl = r.u32le("vmpl");
  const sig_algo = r.u32le("sig_algo");
  const current_tcb = tcbAt("current_tcb");
  const plat_info = r.u64le("plat_info");
  const key_info = r.u32le("key_info");
  zeroRun(r, 4, "reserved_0x4c");
  const report_data = copy(r.bytes(64, "report_data"));
  const measurement = copy(r.bytes(48, "measurement"));
  const host_data = copy(r.bytes(32, "host_data"));
  const id_key_digest = copy(r.bytes(48, "id_key_digest"));
  const author_key_digest = copy(r.bytes(48, "author_key_digest"));
  const report_id = copy(r.bytes(32, "report_id"));
  const report_id_ma = copy(r.bytes(32, "report_id_ma"));
  const reported_tcb = tcbAt("reported_tcb");
  let cpuid_fam_id: number | null = null;
  let cpuid_mod_id: number | null = null;
  let cpuid_step: number | null = null;
  if (layout === "v2") zeroRun(r, 0x18, "reserved_0x188");
  else {
    cpuid_fam_id = r.u8("cpuid_fam_id");
    cpuid_mod_id = r.u8("cpuid_mod_id");
    cpuid_step = r.u8("cpuid_step");
    zeroRun(r, 0x15, "reserved_0x18b");
  }
  const chip_id = copy(r.bytes(64, "chip_id"));
  const committed_tcb = tcbAt("committed_tcb");
  const fw = (what: string): FirmwareVersion => {
    const build = r.u8(`${what}.build`);
    const minor = r.u8(`${what}.minor`);
    const major = r.u8(`${what}.major`);
    zeroRun(r, 1, `reserved_${what}`);
    return { major, minor, build };
  };
  const current = fw("current");
  const committed = fw("committed");
  const launch_tcb = tcbAt("launch_tcb");
  let launch_mit_vector: bigint | null = null;
  let current_mit_vector: bigint | null = null;
  if (layout === "v5") {
    launch_mit_vector = r.u64le("launch_mit_vector");
    current_mit_vector = r.u64le("current_mit_vector");
    zeroRun(r, 0x98, "reserved_0x208");
  } else zeroRun(r, 0xa8, "reserved_0x1f8");
  const sigR = copy(r.bytes(SNP_SIG_COMPONENT_SIZE, "signature.r"));
  const sigS = copy(r.bytes(SNP_SIG_COMPONENT_SIZE, "signature.s"));
  return {
    version,
    guest_svn,
    policy,
    family_id,
    image_id,
    vmpl,
    sig_algo,
    current_tcb,
    plat_info,
    key_info,
    report_data,
    measurement,
    host_data,
    id_key_digest,
    author_key_digest,
    report_id,
    report_id_ma,
    reported_tcb,
    cpuid_fam_id,
    cpuid_mod_id,
    cpuid_step,
    chip_id,
    committed_tcb,
    current,
    committed,
    launch_tcb,
    launch_mit_vector,
    current_mit_vector,
    signature: { r: sigR, s: sigS },
  };
}

// ---- report → bytes --------------------------------------------------------------------------------
function fieldError(field: string, problem: string): never {
  throw new ParseError(`${STRUCT} (structured)`, field, 0, problem);
}

function putBytes(out: Uint8Array, at: number, b: Uint8Array, len: number, field: string): void {
  if (!(b instanceof Uint8Array) || b.length !== len) fieldError(field, `must be ${len} bytes`);
  out.set(b, at);
}

function checkUint(v: number, bits: 8 | 32, field: string): number {
  const max = bits === 8 ? 0xff : 0xffffffff;
  if (!Number.isInteger(v) || v < 0 || v > max) fieldError(field, `must be an unsigned ${bits}-bit integer, got ${v}`);
  return v;
}

function encodeTcb(out: Uint8Array, at: number, t: TcbVersion, layout: TcbLayout, field: string): void {
  const u8 = (v: number, f: string) => checkUint(v, 8, `${field}.${f}`);
  if (layout === "legacy") {
    if (t.fmc !== null) fieldError(`${field}.fmc`, "must be null for a Milan/Genoa report");
    out[at] = u8(t.bootloader, "bootloader");
    out[at + 1] = u8(t.tee, "tee");
    out[at + 6] = u8(t.snp, "snp");
    out[at + 7] = u8(t.microcode, "microcode");
  } else {
    if (t.fmc === null) fieldError(`${field}.fmc`, "must be a number for a Turin report");
    out[at] = u8(t.fmc, "fmc");
    out[at + 1] = u8(t.bootloader, "bootloader");
    out[at + 2] = u8(t.tee, "tee");
    out[at + 3] = u8(t.snp, "snp");
    out[at + 7] = u8(t.microcode, "microcode");
  }
}

function putU64(view: DataView, at: number, v: bigint, field: string): void {
  if (typeof v !== "bigint" || v < 0n || v > 0xffffffffffffffffn)
    fieldError(field, "must be an unsigned 64-bit integer");
  view.setBigUint64(at, v, true);
}

/** Encode a report the way virtee's Encoder does (reserved bytes zero). */
export function encodeSnpReport(rep: SnpReport): Uint8Array {
  const layout = reportLayout(rep.version);
  if (layout === undefined) fieldError("version", `unsupported report version ${rep.version}`);
  const out = new Uint8Array(SNP_REPORT_SIZE);
  const view = new DataView(out.buffer);
  const u32 = (at: number, v: number, f: string) => view.setUint32(at, checkUint(v, 32, f), true);
  if (layout === "v2" && (rep.cpuid_fam_id !== null || rep.cpuid_mod_id !== null || rep.cpuid_step !== null))
    fieldError("cpuid_fam_id", "must be null for a version 2 report");
  if (layout !== "v2" && (rep.cpuid_fam_id === null || rep.cpuid_mod_id === null || rep.cpuid_step === null))
    fieldError("cpuid_fam_id", `must be present for a version ${rep.version} report`);
  if (layout === "v5" && (rep.launch_mit_vector === null || rep.current_mit_vector === null))
    fieldError("launch_mit_vector", "must be present for a version 5 report");
  if (layout !== "v5" && (rep.launch_mit_vector !== null || rep.current_mit_vector !== null))
    fieldError("launch_mit_vector", `must be null for a version ${rep.version} report`);
  putBytes(out, 0x1a0, rep.chip_id, 64, "chip_id");
  const tcb = tcbLayoutOf(rep.version, rep.cpuid_fam_id, rep.cpuid_mod_id, rep.chip_id, fieldError);

  u32(0x00, rep.version, "version");
  u32(0x04, rep.guest_svn, "guest_svn");
  putU64(view, 0x08, rep.policy, "policy");
  putBytes(out, 0x10, rep.family_id, 16, "family_id");
  putBytes(out, 0x20, rep.image_id, 16, "image_id");
  u32(0x30, rep.vmpl, "vmpl");
  u32(0x34, rep.sig_algo, "sig_algo");
  encodeTcb(out, 0x38, rep.current_tcb, tcb, "current_tcb");
  putU64(view, 0x40, rep.plat_info, "plat_info");
  u32(0x48, rep.key_info, "key_info");
  putBytes(out, 0x50, rep.report_data, 64, "report_data");
  putBytes(out, 0x90, rep.measurement, 48, "measurement");
  putBytes(out, 0xc0, rep.host_data, 32, "host_data");
  putBytes(out, 0xe0, rep.id_key_digest, 48, "id_key_digest");
  putBytes(out, 0x110, rep.author_key_digest, 48, "author_key_digest");
  putBytes(out, 0x140, rep.report_id, 32, "report_id");
  putBytes(out, 0x160, rep.report_id_ma, 32, "report_id_ma");
  encodeTcb(out, 0x180, rep.reported_tcb, tcb, "reported_tcb");
  if (layout !== "v2") {
    out[0x188] = checkUint(rep.cpuid_fam_id!, 8, "cpuid_fam_id");
    out[0x189] = checkUint(rep.cpuid_mod_id!, 8, "cpuid_mod_id");
    out[0x18a] = checkUint(rep.cpuid_step!, 8, "cpuid_step");
  }
  encodeTcb(out, 0x1e0, rep.committed_tcb, tcb, "committed_tcb");
  const fw = (at: number, v: FirmwareVersion, f: string) => {
    out[at] = checkUint(v.build, 8, `${f}.build`);
    out[at + 1] = checkUint(v.minor, 8, `${f}.minor`);
    out[at + 2] = checkUint(v.major, 8, `${f}.major`);
  };
  fw(0x1e8, rep.current, "current");
  fw(0x1ec, rep.committed, "committed");
  encodeTcb(out, 0x1f0, rep.launch_tcb, tcb, "launch_tcb");
  if (layout === "v5") {
    putU64(view, 0x1f8, rep.launch_mit_vector!, "launch_mit_vector");
    putU64(view, 0x200, rep.current_mit_vector!, "current_mit_vector");
  }
  putBytes(out, 0x2a0, rep.signature.r, SNP_SIG_COMPONENT_SIZE, "signature.r");
  putBytes(out, 0x2e8, rep.signature.s, SNP_SIG_COMPONENT_SIZE, "signature.s");
  return out;
}
