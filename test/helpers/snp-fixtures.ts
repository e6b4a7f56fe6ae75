// Test SEV-SNP material: a throwaway AMD-shaped PKI (ARK → ASK → VCEK, RSA-PSS/SHA-384 like AMD's,
// VCEK EC P-384 with serial number 0 and AMD's TCB/hwID extensions), SNP reports signed with that
// VCEK, and GHCB certificate tables. Made with the `openssl` CLI once per process.
import { execFileSync } from "node:child_process";
import { createPrivateKey, randomBytes, X509Certificate } from "node:crypto";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { p384 } from "@noble/curves/nist.js";
import { CERT_GUIDS, encodeCertTable } from "../../platform/snp/certs.ts";
import { ERRNO, SNP_GET_EXT_REPORT, SNP_GET_REPORT, type IoctlDevice } from "../../platform/snp/ioctl.ts";
import { encodeSnpReport, SNP_SIGNED_SIZE, type SnpReport, type TcbVersion } from "../../platform/snp/report.ts";
import { fromB64url } from "../../platform/util/bytes.ts";
import type { FakeTsmOptions } from "./fake-tsm.ts";

export interface TestPki {
  /** Where the openssl files were made (already removed unless makeTestPki({dir}) was given). */
  dir: string;
  arkPem: string;
  askPem: string;
  vcekPem: string;
  arkDer: Uint8Array;
  askDer: Uint8Array;
  vcekDer: Uint8Array;
  /** VCEK private scalar (48 bytes). */
  vcekKey: Uint8Array;
  chipId: Uint8Array;
  tcb: TcbVersion;
}

/** Default TCB of the test chip (Milan/Genoa layout): bl 3, tee 0, snp 8, ucode 206. */
export const TEST_TCB: TcbVersion = { fmc: null, bootloader: 3, tee: 0, snp: 8, microcode: 206 };
/** Turin layout (fmc first). */
export const TEST_TCB_TURIN: TcbVersion = { fmc: 1, bootloader: 2, tee: 0, snp: 3, microcode: 0x44 };

function openssl(args: string[], cwd: string): void {
  execFileSync("openssl", args, { cwd, stdio: ["ignore", "ignore", "pipe"] });
}

const PSS = ["-sigopt", "rsa_padding_mode:pss", "-sigopt", "rsa_pss_saltlen:48", "-sha384"];

/** Make a fresh PKI in a temp dir. `chipId` goes into the VCEK hwID extension. */
export function makeTestPki(
  opts: { chipId?: Uint8Array; tcb?: TcbVersion; dir?: string; turin?: boolean } = {},
): TestPki {
  const dir = opts.dir ?? fs.mkdtempSync(path.join(os.tmpdir(), "snp-pki-"));
  // Turin: the chip id has 8 significant bytes, the VCEK an 8-byte hwID and an fmcSPL.
  const chipId =
    opts.chipId ??
    (opts.turin ? new Uint8Array([...randomBytes(8), ...new Uint8Array(56)]) : new Uint8Array(randomBytes(64)));
  const tcb = opts.tcb ?? (opts.turin ? TEST_TCB_TURIN : TEST_TCB);
  const hwid = tcb.fmc !== null ? chipId.subarray(0, 8) : chipId;
  const ext = [
    "[ca]",
    "basicConstraints = critical,CA:true",
    "keyUsage = critical,keyCertSign,cRLSign",
    "[vcek]",
    `1.3.6.1.4.1.3704.1.1 = ASN1:IA5STRING:${tcb.fmc !== null ? "Turin" : "Milan"}`,
    `1.3.6.1.4.1.3704.1.3.1 = ASN1:INTEGER:${tcb.bootloader}`,
    `1.3.6.1.4.1.3704.1.3.2 = ASN1:INTEGER:${tcb.tee}`,
    `1.3.6.1.4.1.3704.1.3.3 = ASN1:INTEGER:${tcb.snp}`,
    `1.3.6.1.4.1.3704.1.3.8 = ASN1:INTEGER:${tcb.microcode}`,
    ...(tcb.fmc !== null ? [`1.3.6.1.4.1.3704.1.3.9 = ASN1:INTEGER:${tcb.fmc}`] : []),
    `1.3.6.1.4.1.3704.1.4 = DER:${Buffer.from(hwid).toString("hex")}`,
  ].join("\n");
  try {
    fs.writeFileSync(path.join(dir, "ext.cnf"), ext + "\n");
    openssl(["genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", "ark.key"], dir);
    openssl(
      [
        "req",
        "-new",
        "-x509",
        "-key",
        "ark.key",
        "-subj",
        "/CN=ARK-Test/O=cvm-unlock tests",
        "-days",
        "3650",
        "-set_serial",
        "1",
        ...PSS,
        "-config",
        "/dev/null",
        "-addext",
        "basicConstraints=critical,CA:true",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
        "-out",
        "ark.pem",
      ],
      dir,
    );
    openssl(["genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", "ask.key"], dir);
    openssl(
      [
        "req",
        "-new",
        "-key",
        "ask.key",
        "-subj",
        "/CN=SEV-Test/O=cvm-unlock tests",
        "-config",
        "/dev/null",
        "-out",
        "ask.csr",
      ],
      dir,
    );
    openssl(
      [
        "x509",
        "-req",
        "-in",
        "ask.csr",
        "-CA",
        "ark.pem",
        "-CAkey",
        "ark.key",
        "-set_serial",
        "2",
        "-days",
        "3650",
        ...PSS,
        "-extfile",
        "ext.cnf",
        "-extensions",
        "ca",
        "-out",
        "ask.pem",
      ],
      dir,
    );
    openssl(["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:secp384r1", "-out", "vcek.key"], dir);
    openssl(
      [
        "req",
        "-new",
        "-key",
        "vcek.key",
        "-subj",
        "/CN=SEV-VCEK/O=cvm-unlock tests",
        "-config",
        "/dev/null",
        "-out",
        "vcek.csr",
      ],
      dir,
    );
    openssl(
      [
        "x509",
        "-req",
        "-in",
        "vcek.csr",
        "-CA",
        "ask.pem",
        "-CAkey",
        "ask.key",
        "-set_serial",
        "0",
        "-days",
        "3650",
        ...PSS,
        "-extfile",
        "ext.cnf",
        "-extensions",
        "vcek",
        "-out",
        "vcek.pem",
      ],
      dir,
    );
    const pem = (f: string) => fs.readFileSync(path.join(dir, f), "utf8");
    const der = (p: string) => new Uint8Array(new X509Certificate(p).raw);
    const jwk = createPrivateKey(pem("vcek.key")).export({ format: "jwk" }) as { d: string };
    const [arkPem, askPem, vcekPem] = [pem("ark.pem"), pem("ask.pem"), pem("vcek.pem")];
    return {
      dir,
      arkPem,
      askPem,
      vcekPem,
      arkDer: der(arkPem),
      askDer: der(askPem),
      vcekDer: der(vcekPem),
      vcekKey: fromB64url(jwk.d),
      chipId,
      tcb,
    };
  } finally {
    // Everything is in memory; keep only a directory the caller asked for.
    if (opts.dir === undefined) fs.rmSync(dir, { recursive: true, force: true });
  }
}

let shared: TestPki | undefined;
/** One PKI per test process (key generation takes a few hundred ms). */
export function testPki(): TestPki {
  shared ??= makeTestPki();
  return shared;
}

export interface ReportOptions {
  version?: 3 | 5;
  reportData: Uint8Array;
  vmpl?: number;
  measurement?: Uint8Array;
  policy?: bigint;
  /** HOST_DATA, set by whoever launched the VM (init-data digest). */
  hostData?: Uint8Array;
}

/** A structurally real report for this PKI's chip (Genoa CPUID for v3, Milan for v5). */
export function unsignedReport(pki: TestPki, o: ReportOptions): SnpReport {
  const version = o.version ?? 3;
  const z = (n: number) => new Uint8Array(n);
  return {
    version,
    guest_svn: 0,
    policy: o.policy ?? 0x30000n,
    family_id: z(16),
    image_id: z(16),
    vmpl: o.vmpl ?? 0,
    sig_algo: 1,
    current_tcb: pki.tcb,
    plat_info: 0x25n,
    key_info: 0,
    report_data: o.reportData,
    measurement: o.measurement ?? new Uint8Array(48).fill(0xa5),
    host_data: o.hostData ?? z(32),
    id_key_digest: z(48),
    author_key_digest: z(48),
    report_id: new Uint8Array(32).fill(0x11),
    report_id_ma: new Uint8Array(32).fill(0xff),
    reported_tcb: pki.tcb,
    // Turin 0x1A/0x02 when the PKI is Turin-shaped; else Milan (v5) or Genoa (v3)
    cpuid_fam_id: pki.tcb.fmc !== null ? 0x1a : 0x19,
    cpuid_mod_id: pki.tcb.fmc !== null ? 0x02 : version === 5 ? 0x01 : 0xa0,
    cpuid_step: pki.tcb.fmc !== null ? 0x00 : version === 5 ? 0x01 : 0x02,
    chip_id: pki.chipId,
    committed_tcb: pki.tcb,
    current: { major: 1, minor: 55, build: 40 },
    committed: { major: 1, minor: 55, build: 40 },
    launch_tcb: pki.tcb,
    launch_mit_vector: version === 5 ? 0xbn : null,
    current_mit_vector: version === 5 ? 0xbn : null,
    signature: { r: z(72), s: z(72) },
  };
}

/** Sign an encoded report in place (ECDSA P-384 / SHA-384 over [0,0x2A0), R/S little-endian). */
export function signReport(raw: Uint8Array, vcekKey: Uint8Array): Uint8Array {
  const sig = p384.sign(raw.subarray(0, SNP_SIGNED_SIZE), vcekKey, { lowS: false });
  raw.fill(0, 0x2a0, 0x330);
  raw.set(sig.slice(0, 48).reverse(), 0x2a0);
  raw.set(sig.slice(48, 96).reverse(), 0x2e8);
  return raw;
}

export function makeSignedReport(pki: TestPki, o: ReportOptions): Uint8Array {
  return signReport(encodeSnpReport(unsignedReport(pki, o)), pki.vcekKey);
}

/** The host's GHCB certificate table: VCEK, ASK, ARK. */
export function makeCertTable(pki: TestPki, which: ("VCEK" | "ASK" | "ARK")[] = ["VCEK", "ASK", "ARK"]): Uint8Array {
  const der = { VCEK: pki.vcekDer, ASK: pki.askDer, ARK: pki.arkDer };
  return encodeCertTable(which.map((w) => ({ guid: CERT_GUIDS[w], data: der[w] })));
}

/** FakeTsm options that make the stand-in kernel behave like the sev_guest provider. */
export function snpProvider(
  pki: TestPki,
  o: { version?: 3 | 5; certs?: boolean; hostData?: Uint8Array } = {},
): Pick<FakeTsmOptions, "provider" | "outblobFor" | "auxblobFor"> {
  return {
    provider: "sev_guest",
    outblobFor: (inblob, ctx) => {
      if (inblob.length !== 64) return new Uint8Array(0); // the kernel would fail the read with EINVAL
      return makeSignedReport(pki, {
        version: o.version ?? 3,
        reportData: inblob,
        vmpl: ctx.privlevel ?? 0,
        ...(o.hostData ? { hostData: o.hostData } : {}),
      });
    },
    ...(o.certs === false ? {} : { auxblobFor: () => makeCertTable(pki) }),
  };
}

// ---- a stand-in /dev/sev-guest behind the IoctlDevice seam -------------------------------------------

export interface FakeSevGuestOptions {
  pki: TestPki;
  version?: 3 | 5;
  /** The host's certificate table (default VCEK/ASK/ARK); null = the host has none. */
  certTable?: Uint8Array | null;
  /** Answer the first N requests with "host busy". */
  busyFirst?: number;
  /** Firmware status to put in MSG_REPORT_RSP (0 = OK). */
  fwStatus?: number;
  /** Fail every request with ENOTTY (VMPCK disabled). */
  vmpckDisabled?: boolean;
  /** The kernel rejects SNP_GET_EXT_REPORT with EINVAL (before reaching the firmware). */
  extUnsupported?: boolean;
  /** The kernel's certificate buffer limit (SEV_FW_BLOB_MAX_SIZE). */
  maxCertsLen?: number;
}

export interface FakeSevGuestCall {
  request: bigint;
  msgVersion: number;
  vmpl: number;
  userData: Uint8Array;
  certsLen?: number;
  outcome: string;
}

/**
 * Plays the sev-guest driver: checks the exact argument layout a real kernel would (sizes, request
 * numbers, msg_version, reserved bytes, page-multiple certs_len, buffers behind every address),
 * answers like the kernel (EIO + needed size, busy, firmware status, ENOTTY) and writes real-format
 * responses. Addresses are handles into a table of the buffers the caller registered.
 */
export class FakeSevGuest implements IoctlDevice {
  readonly calls: FakeSevGuestCall[] = [];
  private readonly buffers = new Map<bigint, Uint8Array>();
  private next = 0x7f0000000000n;
  private busyLeft: number;

  constructor(private readonly o: FakeSevGuestOptions) {
    this.busyLeft = o.busyFirst ?? 0;
  }

  addressOf(buf: Uint8Array): bigint {
    const a = this.next;
    this.next += 0x100000n;
    this.buffers.set(a, buf);
    return a;
  }

  ioctl = (_fd: number, request: bigint, arg: Uint8Array) => {
    const fail = (errno: number, outcome: string, exit?: bigint) => {
      if (exit !== undefined) new DataView(arg.buffer, arg.byteOffset).setBigUint64(0x18, exit, true); // copied back only on error
      this.calls[this.calls.length - 1]!.outcome = outcome;
      return { rc: -1, errno };
    };
    if (request !== SNP_GET_REPORT && request !== SNP_GET_EXT_REPORT) return { rc: -1, errno: ERRNO.ENOTTY };
    const ext = request === SNP_GET_EXT_REPORT;
    if (arg.length !== 0x20) throw new Error(`fake sev-guest: ioctl argument is ${arg.length} bytes, not 0x20`);
    const v = new DataView(arg.buffer, arg.byteOffset, 0x20);
    const req = this.buffers.get(v.getBigUint64(0x08, true));
    const resp = this.buffers.get(v.getBigUint64(0x10, true));
    const call: FakeSevGuestCall = { request, msgVersion: arg[0]!, vmpl: -1, userData: new Uint8Array(0), outcome: "" };
    this.calls.push(call);
    if (arg[0] === 0) return fail(ERRNO.EINVAL, "msg_version 0");
    if (arg.subarray(1, 8).some((x) => x !== 0)) throw new Error("fake sev-guest: padding after msg_version not zero");
    if (v.getBigUint64(0x18, true) !== 0n) throw new Error("fake sev-guest: exitinfo2 not zeroed before the call");
    if (!req || !resp) return fail(ERRNO.EFAULT, "bad address");
    if (req.length !== (ext ? 0x70 : 0x60)) throw new Error(`fake sev-guest: request struct is ${req.length} bytes`);
    if (resp.length !== 4000) throw new Error(`fake sev-guest: response buffer is ${resp.length} bytes`);
    const rv = new DataView(req.buffer, req.byteOffset, req.length);
    call.userData = req.slice(0, 64);
    call.vmpl = rv.getUint32(0x40, true);
    if (req.subarray(0x44, 0x60).some((x) => x !== 0)) throw new Error("fake sev-guest: snp_report_req.rsvd not zero");
    if (this.o.vmpckDisabled) return fail(ERRNO.ENOTTY, "vmpck disabled");
    if (ext) {
      if (this.o.extUnsupported) return fail(ERRNO.EINVAL, "ext unsupported");
      const certsLen = rv.getUint32(0x68, true);
      call.certsLen = certsLen;
      if (certsLen % 4096 !== 0 || certsLen > (this.o.maxCertsLen ?? 0x4000))
        return fail(ERRNO.EINVAL, "bad certs_len");
      const certs = this.buffers.get(rv.getBigUint64(0x60, true));
      if (certsLen > 0 && (!certs || certs.length < certsLen)) return fail(ERRNO.EFAULT, "certs buffer");
      const table = this.o.certTable === undefined ? makeCertTable(this.o.pki) : this.o.certTable;
      const needed = table ? Math.ceil(table.length / 4096) * 4096 : 0;
      if (needed > certsLen) {
        rv.setUint32(0x68, needed, true);
        return fail(ERRNO.EIO, "certs too small", 1n << 32n);
      }
      if (certs) {
        certs.fill(0, 0, certsLen);
        if (table) certs.set(table);
      }
    }
    if (this.busyLeft > 0) {
      this.busyLeft--;
      return fail(ERRNO.EAGAIN, "busy", 2n << 32n);
    }
    const rsp = new DataView(resp.buffer, resp.byteOffset, resp.length);
    resp.fill(0);
    rsp.setUint32(0, this.o.fwStatus ?? 0, true);
    rsp.setUint32(4, 0x4a0, true);
    if (!this.o.fwStatus)
      resp.set(
        makeSignedReport(this.o.pki, { version: this.o.version ?? 3, reportData: call.userData, vmpl: call.vmpl }),
        0x20,
      );
    call.outcome = "ok";
    return { rc: 0, errno: 0 };
  };
}
