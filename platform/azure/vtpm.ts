// The Azure paravisor vTPM steps, on top of the shared TPM client (platform/tpm):
//   1. write the runtime digest to NV 0x01400002 (the paravisor copies it into HCL user-data),
//   2. poll NV 0x01400001 until the regenerated HCL report carries it (bounded, not a fixed sleep),
//   3. TPM2_Quote with the AK at 0x81000003 over SHA-256 PCR0-23, qualifyingData = the digest,
//      then read the PCRs (re-quoting if they moved in between).
import { createHash } from "node:crypto";
import { bytesEqual, hex } from "../util/bytes.ts";
import { CvmError } from "../util/errors.ts";
import type { Tpm } from "../tpm/client.ts";
import { TPMA_NV, TPM_ALG, TPM_RH, hex32 } from "../tpm/constants.ts";
import { nvDefine, nvRead, nvReadPublicIfPresent, nvUndefine, nvWrite, pcrReadBank, quote } from "../tpm/operations.ts";
import type { NvPublic } from "../tpm/structures.ts";
import {
  AZURE_AK_HANDLE,
  HCL_REPORT_NV_INDEX,
  MAX_HCL_NV_SIZE,
  QUOTED_PCRS,
  REPORT_DATA_NV_INDEX,
} from "./constants.ts";
import type { AzureQuote } from "./evidence.ts";
import { parseHclReport, userDataCarries, type HclReport } from "./hcl.ts";

/** Attributes Azure's own tooling uses for 0x01400002 (owner read/write, platform read). */
const REPORT_DATA_ATTRIBUTES = TPMA_NV.OWNERWRITE | TPMA_NV.OWNERREAD | TPMA_NV.PPREAD;

/** The raw HCL NV blob, or undefined when this TPM has no HCL report index (not an Azure CVM). */
export async function readHclReportBlob(tpm: Tpm): Promise<Uint8Array | undefined> {
  const pub = await nvReadPublicIfPresent(tpm, HCL_REPORT_NV_INDEX);
  return pub ? readHclReportNv(tpm, pub) : undefined;
}

/** The HCL NV blob once its index is known to exist: its size and WRITTEN bit are host data too. */
export async function readHclReportNv(tpm: Tpm, pub: NvPublic): Promise<Uint8Array> {
  if (pub.dataSize > MAX_HCL_NV_SIZE)
    throw new CvmError(
      "evidence",
      `NV ${hex32(HCL_REPORT_NV_INDEX)} is ${pub.dataSize} bytes; an HCL report is at most ${MAX_HCL_NV_SIZE}`,
    );
  if (!(pub.attributes & TPMA_NV.WRITTEN))
    throw new CvmError("evidence", `NV ${hex32(HCL_REPORT_NV_INDEX)} (HCL report) was never written by the paravisor`);
  return nvRead(tpm, HCL_REPORT_NV_INDEX, { authHandle: TPM_RH.OWNER, size: pub.dataSize });
}

/** Write `data` to 0x01400002, defining it (owner auth) when missing or too small. */
export async function writeReportData(tpm: Tpm, data: Uint8Array): Promise<void> {
  const pub = await nvReadPublicIfPresent(tpm, REPORT_DATA_NV_INDEX);
  if (pub && pub.dataSize < data.length) {
    tpm.log.debug("report-data NV index too small; redefining it", {
      index: hex32(REPORT_DATA_NV_INDEX),
      size: pub.dataSize,
    });
    await nvUndefine(tpm, REPORT_DATA_NV_INDEX);
  }
  if (!pub || pub.dataSize < data.length) {
    await nvDefine(tpm, { index: REPORT_DATA_NV_INDEX, size: data.length, attributes: REPORT_DATA_ATTRIBUTES });
    await nvWrite(tpm, REPORT_DATA_NV_INDEX, data);
    return;
  }
  // Existing larger index: zero-fill the rest so no stale bytes from an earlier run trail the digest.
  const padded = new Uint8Array(pub.dataSize);
  padded.set(data);
  await nvWrite(tpm, REPORT_DATA_NV_INDEX, padded);
}

export interface WaitOptions {
  /** Give up after this long (capped by the deadline). */
  timeoutMs: number;
  /** First pause between reads; grows to 500 ms. */
  intervalMs?: number;
}

/** Poll the HCL report until its user-data starts with hex(digest); fail clearly when it never does. */
export async function waitForHclReport(
  tpm: Tpm,
  digest: Uint8Array,
  o: WaitOptions,
): Promise<{ report: HclReport; polls: number }> {
  const started = Date.now();
  const limit = tpm.deadline.cap(o.timeoutMs);
  let interval = o.intervalMs ?? 50;
  for (let polls = 1; ; polls++) {
    const blob = await readHclReportBlob(tpm);
    if (!blob) throw new CvmError("evidence", `NV ${hex32(HCL_REPORT_NV_INDEX)} (HCL report) disappeared`);
    const report = parseHclReport(blob);
    if (userDataCarries(report, digest)) return { report, polls };
    const waited = Date.now() - started;
    if (waited >= limit) {
      const seen = report.userData === undefined ? "no user-data" : `user-data ${report.userData.slice(0, 16)}…`;
      throw new CvmError(
        "evidence",
        `the HCL report (NV ${hex32(HCL_REPORT_NV_INDEX)}) did not pick up the report data written to NV ${hex32(REPORT_DATA_NV_INDEX)} within ${waited} ms (${polls} reads; it still has ${seen})`,
        { hint: "the Azure paravisor did not refresh the HCL report; is this an Azure CVM with a current paravisor?" },
      );
    }
    await tpm.deadline.sleep(Math.min(interval, limit - waited), "waiting for the paravisor to refresh the HCL report");
    interval = Math.min(interval * 2, 500);
  }
}

/** Quote PCR0-23 (SHA-256) with the Azure AK, bound to `digest`; PCRs read afterwards and checked. */
export async function azureQuote(tpm: Tpm, digest: Uint8Array): Promise<AzureQuote> {
  for (let attempt = 1; attempt <= 3; attempt++) {
    const q = await quote(tpm, {
      signHandle: AZURE_AK_HANDLE,
      qualifyingData: digest,
      selection: [{ hash: TPM_ALG.SHA256, pcrs: QUOTED_PCRS }],
    });
    if (q.signature.sigAlg !== TPM_ALG.RSASSA)
      throw new CvmError(
        "evidence",
        `the AK at ${hex32(AZURE_AK_HANDLE)} signed with algorithm 0x${q.signature.sigAlg.toString(16)}, not RSASSA`,
      );
    if (!bytesEqual(q.attest.extraData, digest))
      throw new CvmError("evidence", `TPM2_Quote extraData ${hex(q.attest.extraData)} is not the qualifying data sent`);
    const pcrs = await pcrReadBank(tpm, TPM_ALG.SHA256, QUOTED_PCRS);
    const pcrDigest = createHash("sha256").update(Buffer.concat(pcrs)).digest();
    if (bytesEqual(pcrDigest, q.attest.pcrDigest)) return { signature: q.signature.sig, message: q.message, pcrs };
    tpm.log.debug("PCRs changed between quote and read; quoting again", { attempt });
  }
  throw new CvmError("evidence", "PCRs kept changing between TPM2_Quote and TPM2_PCR_Read (3 attempts)");
}
