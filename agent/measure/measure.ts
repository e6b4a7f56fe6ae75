// Extending the volume identity / leave-initrd marker into the TPM PCR (every active bank) and,
// on TDX with tsm-mr sysfs, an RTMR; then appending the event record. Fail-closed rules:
//   mode "required": no TPM/RTMR -> error;  "if-present": absent -> skipped (logged);  "off": skipped.
//   A register that is present but cannot be extended is always an error.
import * as fs from "node:fs";
import * as path from "node:path";
import { encodeCbor } from "../../platform/util/cbor.ts";
import type { Deadline } from "../../platform/util/deadline.ts";
import { CvmError, errorMessage } from "../../platform/util/errors.ts";
import type { Logger } from "../../platform/util/log.ts";
import { algName } from "../../platform/tpm/constants.ts";
import { digestsFor } from "../../platform/tpm/operations.ts";
import { utf8 } from "../../platform/util/bytes.ts";
import { RECORD_VERSION, rtmrDigest, type MeasurementRecord } from "./events.ts";
import { openPcrBackend, tpmPresent, type PcrBackend } from "./pcr-backend.ts";

export type RegisterMode = "required" | "if-present" | "off";

export interface MeasureSettings {
  tpm: RegisterMode;
  pcr: number;
  rtmr: number;
  rtmr_mode: RegisterMode;
  record_path: string;
}

export interface MeasureEnv {
  root: string;
  tpmSpec: string;
  deadline: Deadline;
  log: Logger;
  /** Tests inject a backend; production opens the TPM named by tpmSpec. */
  openBackend?: () => Promise<PcrBackend>;
}

export function rtmrPath(root: string, index: number): string {
  return path.join(root, `sys/devices/virtual/misc/tdx_guest/measurements/rtmr${index}:sha384`);
}

async function extendPcr(s: MeasureSettings, env: MeasureEnv, event: string): Promise<MeasurementRecord["pcr"]> {
  if (s.tpm === "off") return undefined;
  if (!env.openBackend && !tpmPresent(env.tpmSpec, env.root)) {
    if (s.tpm === "required")
      throw new CvmError("platform", `no TPM at ${env.tpmSpec}, but unlock.measure.tpm is "required"`);
    env.log.warning(`no TPM at ${env.tpmSpec}: PCR ${s.pcr} not extended with ${JSON.stringify(event)}`);
    return undefined;
  }
  const backend = await (env.openBackend ?? (() => openPcrBackend(env.tpmSpec, env.root, env.deadline, env.log)))();
  try {
    const banks = await backend.activeBanks(s.pcr);
    if (banks.length === 0)
      throw new CvmError("platform", `${backend.description}: PCR ${s.pcr} is not allocated in any bank`);
    // An active bank we cannot hash is an error: left alone it could be forged to the expected value later.
    const digests = digestsFor(banks, utf8(event));
    await backend.extend(s.pcr, digests);
    env.log.info(`extended PCR ${s.pcr} (${banks.map((b) => algName(b)).join(", ")}) with ${JSON.stringify(event)}`);
    return { index: s.pcr, digests: Object.fromEntries(digests.map((d) => [algName(d.hashAlg), d.digest])) };
  } catch (e) {
    if (e instanceof CvmError && e.kind !== "internal") throw e;
    throw new CvmError("platform", `extending PCR ${s.pcr} on ${backend.description} failed: ${errorMessage(e)}`);
  } finally {
    backend.close();
  }
}

function extendRtmr(s: MeasureSettings, env: MeasureEnv, event: string): MeasurementRecord["rtmr"] {
  if (s.rtmr_mode === "off") return undefined;
  const p = rtmrPath(env.root, s.rtmr);
  if (!fs.existsSync(p)) {
    if (s.rtmr_mode === "required")
      throw new CvmError(
        "platform",
        `no TDX RTMR at ${p} (needs Linux >= 6.16 tsm-mr), but unlock.measure.rtmr_mode is "required"`,
      );
    env.log.debug(`no TDX RTMR ${s.rtmr} sysfs file: not extended`);
    return undefined;
  }
  const digest = rtmrDigest(event);
  // The kernel wants exactly one 48-byte write at offset 0 (docs/spec/tdx-abi.md §5).
  const fd = fs.openSync(p, "r+");
  try {
    const n = fs.writeSync(fd, digest, 0, digest.length, 0);
    if (n !== digest.length) throw new CvmError("platform", `short write to ${p} (${n} of ${digest.length} bytes)`);
  } catch (e) {
    if (e instanceof CvmError) throw e;
    throw new CvmError("platform", `extending RTMR ${s.rtmr} via ${p} failed: ${errorMessage(e)}`);
  } finally {
    fs.closeSync(fd);
  }
  env.log.info(`extended RTMR ${s.rtmr} with ${JSON.stringify(event)}`);
  return { index: s.rtmr, digest };
}

/** Append one record to the CBOR sequence (creates /run/cvm-unlock as needed). */
export function appendRecord(recordPath: string, rec: MeasurementRecord): void {
  fs.mkdirSync(path.dirname(recordPath), { recursive: true, mode: 0o755 });
  fs.appendFileSync(recordPath, encodeCbor(rec), { mode: 0o644 });
}

/** Measure one event into every configured register and record what was done. */
export async function measureEvent(
  s: MeasureSettings,
  env: MeasureEnv,
  kind: string,
  event: string,
  outcome?: string,
): Promise<MeasurementRecord> {
  const rec: MeasurementRecord = { v: RECORD_VERSION, kind, event, time: Math.floor(Date.now() / 1000) };
  if (outcome !== undefined) rec.outcome = outcome;
  let failure: unknown;
  try {
    const pcr = await extendPcr(s, env, event);
    if (pcr) rec.pcr = pcr;
  } catch (e) {
    failure = e;
  }
  try {
    // The RTMR is extended even when the TPM failed: a marker that reached one register still helps.
    const rtmr = extendRtmr(s, env, event);
    if (rtmr) rec.rtmr = rtmr;
  } catch (e) {
    failure ??= e;
  }
  if (rec.pcr || rec.rtmr) {
    try {
      appendRecord(s.record_path, rec);
    } catch (e) {
      failure ??= new CvmError("platform", `cannot write the event record ${s.record_path}: ${errorMessage(e)}`);
    }
  }
  if (failure) throw failure;
  return rec;
}
