// TDX fixtures for a stand-in guest: quotes (v4 / v5 TD 1.5) with the REPORTDATA the agent wrote
// and a valid ECDSA-P256 quote signature by a fixed TEST attestation key, plus a CCEL log area
// whose replay gives the quote's RTMRs. Plugs into FakeTsm ({ provider: "tdx_guest", outblobFor }).
// These quotes are NOT Intel-rooted: the QE report is signed by a test "PCK" key and the PCK chain
// is a marker string, so only the quote signature and QE binding are meaningful.
import * as fs from "node:fs";
import * as path from "node:path";
import { p256 } from "@noble/curves/nist.js";
import { sha256, sha384 } from "@noble/hashes/sha2.js";
import { concat, fromHex, utf8 } from "../../platform/util/bytes.ts";
import { encodeEventLog } from "../../platform/eventlog/encode.ts";
import { TPM_ALG_SHA384 } from "../../platform/eventlog/algorithms.ts";
import {
  ATT_KEY_TYPE_ECDSA_P256,
  CERT_TYPE_QE_REPORT,
  encodeQeCertification,
  encodeSignatureData,
  encodeSignedPart,
  encodeTdxQuote,
  INTEL_QE_VENDOR_ID,
  TDX_TEE_TYPE,
  type TdxQuoteBody,
} from "../../platform/tdx/quote.ts";

/** Fixed test keys (derived from labels, so every run produces the same keys). */
export const TEST_ATTESTATION_PRIVATE_KEY = sha256(utf8("cvm-unlock TEST TDX attestation key"));
export const TEST_PCK_PRIVATE_KEY = sha256(utf8("cvm-unlock TEST TDX PCK key"));
/** x||y, as carried in the quote's signature data. */
export const TEST_ATTESTATION_PUBLIC_KEY = p256.getPublicKey(TEST_ATTESTATION_PRIVATE_KEY, false).subarray(1);

const filled = (n: number, byte: number) => new Uint8Array(n).fill(byte);

export interface QuoteOptions {
  version: 4 | 5;
  /** 64 bytes. */
  reportData: Uint8Array;
  rtmrs?: Uint8Array[];
  mrTd?: Uint8Array;
  mrConfigId?: Uint8Array;
  /** v5 body type (default 3 = TD 1.5). */
  bodyType?: 2 | 3;
  /** Bytes appended after the signature data (real QGS buffers carry padding). */
  trailing?: number;
  attestationPrivateKey?: Uint8Array;
}

export function testBody(o: QuoteOptions): TdxQuoteBody {
  const rtmrs = o.rtmrs ?? [new Uint8Array(48), new Uint8Array(48), new Uint8Array(48), new Uint8Array(48)];
  return {
    teeTcbSvn: fromHex("03000500000000000000000000000000"),
    mrSeam: filled(48, 0x5e),
    mrSignerSeam: new Uint8Array(48),
    seamAttributes: new Uint8Array(8),
    tdAttributes: fromHex("0000001000000000"), // SEPT_VE_DISABLE, not DEBUG
    xfam: fromHex("e742060000000000"),
    mrTd: o.mrTd ?? filled(48, 0x7d),
    mrConfigId: o.mrConfigId ?? new Uint8Array(48),
    mrOwner: new Uint8Array(48),
    mrOwnerConfig: new Uint8Array(48),
    rtmrs: [rtmrs[0]!, rtmrs[1]!, rtmrs[2]!, rtmrs[3]!],
    reportData: o.reportData,
    ...(o.version === 5 && (o.bodyType ?? 3) === 3
      ? { teeTcbSvn2: fromHex("03000500000000000000000000000000"), mrServiceTd: new Uint8Array(48) }
      : {}),
  };
}

/** QE certification data (type 6) whose QE REPORTDATA binds the attestation key, as DCAP does. */
function qeCertification(attestationKey: Uint8Array): Uint8Array {
  const qeAuthData = utf8("cvm-unlock test QE auth data");
  const qeReport = new Uint8Array(384);
  qeReport.set(sha256(concat(attestationKey, qeAuthData)), 0x140);
  const qeReportSignature = p256.sign(qeReport, TEST_PCK_PRIVATE_KEY, { prehash: true });
  const marker = utf8("cvm-unlock TEST quote: no Intel PCK certificate chain\n");
  return encodeQeCertification({ qeReport, qeReportSignature, qeAuthData, inner: { type: 5, data: marker } });
}

/** A complete quote blob. */
export function makeTdxQuote(o: QuoteOptions): Uint8Array {
  if (o.reportData.length !== 64) throw new RangeError("makeTdxQuote: reportData must be 64 bytes");
  const priv = o.attestationPrivateKey ?? TEST_ATTESTATION_PRIVATE_KEY;
  const attestationKey = p256.getPublicKey(priv, false).subarray(1);
  const bodyType = o.version === 4 ? 2 : (o.bodyType ?? 3);
  const header = {
    version: o.version,
    attKeyType: ATT_KEY_TYPE_ECDSA_P256,
    teeType: TDX_TEE_TYPE,
    reserved: new Uint8Array(4),
    qeVendorId: fromHex(INTEL_QE_VENDOR_ID),
    userData: new Uint8Array(20),
  };
  const signed = encodeSignedPart(header, bodyType, testBody(o));
  const signature = p256.sign(signed, priv, { prehash: true });
  const sigData = encodeSignatureData({
    signature,
    attestationKey,
    certType: CERT_TYPE_QE_REPORT,
    certData: qeCertification(attestationKey),
  });
  return concat(encodeTdxQuote(signed, sigData), new Uint8Array(o.trailing ?? 0));
}

// ---- CCEL -----------------------------------------------------------------------------------------

export interface TestCcel {
  /** The log area as firmware leaves it (log ‖ 0xFF padding to `areaSize`). */
  area: Uint8Array;
  /** Length of the log proper. */
  logLength: number;
  /** RTMR0..3 this log replays to, computed here independently of platform/eventlog. */
  rtmrs: Uint8Array[];
}

/** A small TDVF-like CCEL: a few events in MR 1..3 (RTMR0..2), SHA-384 only. */
export function makeCcel(opts: { areaSize?: number; pad?: 0x00 | 0xff; label?: string } = {}): TestCcel {
  const label = opts.label ?? "cvm-unlock test firmware";
  const plan: Array<{ mr: number; type: number; text: string }> = [
    { mr: 1, type: 0x8000000a, text: `${label}: td_hob` },
    { mr: 1, type: 0x80000001, text: `${label}: SecureBoot=0` },
    { mr: 1, type: 0x4, text: "\0\0\0\0" },
    { mr: 2, type: 0x80000003, text: `${label}: shim` },
    { mr: 2, type: 0x80000007, text: "Exit Boot Services Invocation" },
    { mr: 3, type: 0xd, text: `${label}: linux root=/dev/vda1` },
  ];
  const rtmrs = [new Uint8Array(48), new Uint8Array(48), new Uint8Array(48), new Uint8Array(48)];
  const events = plan.map((p) => {
    const data = utf8(p.text);
    const digest = sha384(data);
    rtmrs[p.mr - 1] = sha384(concat(rtmrs[p.mr - 1]!, digest));
    return { index: p.mr, type: p.type, digests: new Map([[TPM_ALG_SHA384, digest]]), data };
  });
  // An EV_NO_ACTION after the header, as real TDVF logs have; it must not be replayed.
  events.unshift({
    index: 0,
    type: 0x3,
    digests: new Map([[TPM_ALG_SHA384, new Uint8Array(48)]]),
    data: utf8("StartupLocality\0\0"),
  });
  const log = encodeEventLog(
    {
      platformClass: 0,
      specErrata: 0,
      uintnSize: 2,
      algorithms: [{ id: TPM_ALG_SHA384, name: "sha384", size: 48 }],
      vendorInfo: new Uint8Array(),
    },
    events,
  );
  const areaSize = Math.max(opts.areaSize ?? 64 * 1024, log.length + 8);
  const area = new Uint8Array(areaSize).fill(opts.pad ?? 0xff);
  area.set(log);
  return { area, logLength: log.length, rtmrs };
}

/** Put the CCEL (and its ACPI table) where the agent looks under a stand-in root. */
export function installCcel(root: string, ccel: TestCcel): void {
  const dir = path.join(root, "sys/firmware/acpi/tables");
  fs.mkdirSync(path.join(dir, "data"), { recursive: true });
  fs.writeFileSync(path.join(dir, "data/CCEL"), ccel.area);
}

/** outblobFor for FakeTsm: a quote carrying exactly the inblob and the CCEL's RTMRs. */
export function tdxOutblobFor(o: Omit<QuoteOptions, "reportData">): (inblob: Uint8Array) => Uint8Array {
  return (inblob) => makeTdxQuote({ ...o, reportData: inblob });
}
