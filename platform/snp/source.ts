// The `snp` evidence source (docs/spec/kbs-protocol.md §4.2). report_data = SHA-384 runtime digest ‖ 16 zero
// bytes, VMPL 0. Preferred path: configfs-tsm (provider sev_guest, privlevel 0; outblob = report,
// auxblob = certificate table). Fallback when configfs-tsm is unavailable: /dev/sev-guest
// SNP_GET_EXT_REPORT through bun:ffi (SNP_GET_REPORT if the kernel rejects the extended form).
import * as path from "node:path";
import { probeTsmProvider, requestTsmReport } from "../tsm/index.ts";
import type { Evidence, EvidenceRequest, EvidenceSource, PlatformEnv, Probe } from "../types.ts";
import { bytesEqual, fitTo, hex } from "../util/bytes.ts";
import { CvmError, errorMessage } from "../util/errors.ts";
import { pathExists } from "../util/files.ts";
import { certTypeName, parseCertTable, type CertTableEntry } from "./certs.ts";
import { ERRNO, type IoctlDevice } from "./ioctl.ts";
import { loadNativeIoctl } from "./native-ioctl.ts";
import { snpEvidenceJsonValue, type CertChainEntry } from "./json.ts";
import { decodeSnpReport, SNP_REPORT_SIZE, type SnpReport } from "./report.ts";
import { GuestRequestError, requestReportViaIoctl } from "./sev-guest.ts";
import { vekPublicKey, verifySnpReportSignature } from "./verify.ts";

export const SEV_PROVIDER = "sev_guest";
const DRIVER_HINT =
  "load the sev-guest driver (modprobe sev-guest) and make sure configfs is mounted on /sys/kernel/config";

export interface SnpSourceOptions {
  /** Tests inject a stand-in kernel; production loads bun:ffi lazily. */
  ioctlDevice?: () => Promise<IoctlDevice | undefined>;
  /** Pacing of /dev/sev-guest requests (tests shorten it). */
  minIntervalMs?: number;
  busyBackoffMs?: number;
}

const devicePath = (env: PlatformEnv) => path.join(env.paths.root, "dev/sev-guest");
const sysfsPath = (env: PlatformEnv) => path.join(env.paths.root, "sys/devices/platform/sev-guest");

interface RawEvidence {
  report: Uint8Array;
  certTable: Uint8Array | undefined;
  via: "configfs-tsm" | "sev-guest-ioctl";
  ms: number;
}

async function viaConfigfs(env: PlatformEnv, userData: Uint8Array): Promise<RawEvidence> {
  const r = await requestTsmReport(env, {
    inblob: userData,
    privlevel: 0,
    wantAuxblob: true,
    expectProvider: SEV_PROVIDER,
  });
  return { report: r.outblob, certTable: r.auxblob, via: "configfs-tsm", ms: r.ms };
}

async function viaIoctl(env: PlatformEnv, userData: Uint8Array, opts: SnpSourceOptions): Promise<RawEvidence> {
  const dev = await (opts.ioctlDevice ?? loadNativeIoctl)();
  if (!dev)
    throw new CvmError(
      "platform",
      "/dev/sev-guest needs the bun runtime (bun:ffi ioctl); configfs-tsm is not available either",
      { hint: DRIVER_HINT },
    );
  const started = Date.now();
  const base = {
    devicePath: devicePath(env),
    userData,
    vmpl: 0,
    sleep: (ms: number, doing: string) => env.deadline.sleep(ms, doing),
    ...(opts.minIntervalMs !== undefined ? { minIntervalMs: opts.minIntervalMs } : {}),
    ...(opts.busyBackoffMs !== undefined ? { busyBackoffMs: opts.busyBackoffMs } : {}),
  };
  try {
    const r = await requestReportViaIoctl(dev, { ...base, extended: true });
    return { report: r.report, certTable: r.certs, via: "sev-guest-ioctl", ms: Date.now() - started };
  } catch (e) {
    // Kernels that reject the extended request outright (EINVAL before reaching the firmware)
    // still serve the plain one; the verifier then fetches the VCEK itself.
    const rejectedByKernel =
      e instanceof GuestRequestError &&
      e.request === "SNP_GET_EXT_REPORT" &&
      e.errno === ERRNO.EINVAL &&
      e.fwError === 0 &&
      e.vmmError === 0;
    if (!rejectedByKernel) throw e;
    env.log.warning("SNP_GET_EXT_REPORT was rejected (EINVAL); falling back to SNP_GET_REPORT without certificates");
    const r = await requestReportViaIoctl(dev, { ...base, extended: false });
    return { report: r.report, certTable: undefined, via: "sev-guest-ioctl", ms: Date.now() - started };
  }
}

/** Certificates for the evidence: the host's table if it holds a VCEK/VLEK, else null (trustee then uses KDS / its store). */
function certChainFrom(
  table: Uint8Array | undefined,
  env: PlatformEnv,
): { chain: CertChainEntry[] | null; vek: CertTableEntry | undefined } {
  const entries = table ? parseCertTable(table) : [];
  const vek = entries.find((e) => e.type === "VCEK" || e.type === "VLEK");
  if (entries.length > 0 && !vek)
    env.log.warning(
      `the host's certificate table has no VCEK/VLEK (${entries.map((e) => certTypeName(e.type)).join(", ")}); sending cert_chain null`,
    );
  return { chain: vek ? entries.map((e) => ({ cert_type: e.type, data: e.data })) : null, vek };
}

function checkReport(rep: SnpReport, userData: Uint8Array): void {
  if (!bytesEqual(rep.report_data, userData))
    throw new CvmError(
      "evidence",
      `the SNP report carries report_data ${hex(rep.report_data).slice(0, 32)}…, not the ${hex(userData).slice(0, 32)}… we asked for`,
    );
  if (rep.vmpl !== 0)
    throw new CvmError("evidence", `the SNP report is for VMPL ${rep.vmpl}, not 0 (trustee requires VMPL 0)`);
  // trustee rejects v2 (REPORT_VERSION_MIN = 3): say so here instead of letting the KBS refuse.
  if (rep.version < 3)
    throw new CvmError("evidence", `the firmware produced an SNP report version ${rep.version}; trustee accepts 3..5`, {
      hint: "update the host's SEV firmware",
    });
}

export function makeSnpSource(opts: SnpSourceOptions = {}): EvidenceSource {
  return {
    id: "snp",
    insecure: false,

    async probe(env: PlatformEnv): Promise<Probe> {
      const tsm = await probeTsmProvider(env);
      if (tsm.available && tsm.provider === SEV_PROVIDER)
        return {
          source: "snp",
          present: true,
          tee: "snp",
          reason: `configfs-tsm provider ${SEV_PROVIDER}`,
          details: { interface: "configfs-tsm", tsm_provider: SEV_PROVIDER },
        };
      if (pathExists(devicePath(env)))
        return {
          source: "snp",
          present: true,
          tee: "snp",
          reason: `${devicePath(env)} present (configfs-tsm: ${tsm.reason})`,
          details: { interface: "sev-guest-ioctl" },
        };
      if (pathExists(sysfsPath(env)))
        // An SNP guest without its driver: take it, so collect() explains instead of a weaker source winning.
        return {
          source: "snp",
          present: true,
          tee: "snp",
          reason: "SEV-SNP guest platform device present, but no /dev/sev-guest and no configfs-tsm sev_guest provider",
          hint: DRIVER_HINT,
          details: { interface: "none" },
        };
      return {
        source: "snp",
        present: false,
        reason: `no /dev/sev-guest, no sev-guest platform device, no configfs-tsm ${SEV_PROVIDER} provider (${tsm.reason})`,
        hint: `on an SEV-SNP guest: ${DRIVER_HINT}`,
      };
    },

    async collect(env: PlatformEnv, req: EvidenceRequest): Promise<Evidence> {
      if (req.runtimeDigest.length > 64)
        throw new CvmError(
          "internal",
          `runtime digest of ${req.runtimeDigest.length} bytes does not fit SNP report_data`,
        );
      const userData = fitTo(req.runtimeDigest, 64); // digest ‖ zeros (trustee regularize_data)
      let raw: RawEvidence;
      try {
        raw = await viaConfigfs(env, userData);
      } catch (e) {
        if (!(e instanceof CvmError && e.kind === "platform")) throw e;
        if (!pathExists(devicePath(env)))
          throw new CvmError(
            "platform",
            `no SEV-SNP report interface: ${e.message}; ${devicePath(env)} is missing too`,
            { hint: DRIVER_HINT },
          );
        env.log.info(`configfs-tsm unusable (${e.message}); using ${devicePath(env)}`);
        raw = await viaIoctl(env, userData, opts);
      }
      if (raw.report.length !== SNP_REPORT_SIZE)
        throw new CvmError(
          "evidence",
          `the SNP report from ${raw.via} is ${raw.report.length} bytes, expected ${SNP_REPORT_SIZE}`,
        );
      // Say "too old for trustee" before the codec complains about a v2 detail (e.g. a masked chip id).
      const version = new DataView(raw.report.buffer, raw.report.byteOffset, 4).getUint32(0, true);
      if (version === 2)
        throw new CvmError("evidence", "the firmware produced an SNP report version 2; trustee accepts 3..5", {
          hint: "update the host's SEV firmware",
        });
      const rep = decodeSnpReport(raw.report);
      checkReport(rep, userData);
      const { chain, vek } = certChainFrom(raw.certTable, env);
      if (vek) {
        // Not a security check (the KBS decides); it turns a broken host table into a clear log line.
        let ok = false;
        try {
          ok = verifySnpReportSignature(raw.report, vekPublicKey(vek.data));
        } catch (e) {
          env.log.warning(`the host's ${certTypeName(vek.type)} does not parse: ${errorMessage(e)}`);
        }
        if (!ok)
          env.log.warning(
            `the SNP report signature does not verify with the host-supplied ${certTypeName(vek.type)}; the KBS will likely refuse it`,
          );
      }
      env.log.debug("SNP report collected", {
        via: raw.via,
        version: rep.version,
        certs: chain ? chain.length : 0,
        ms: raw.ms,
      });
      return { tee: "snp", primary: snpEvidenceJsonValue(rep, chain), timings: { [raw.via]: raw.ms } };
    },
  };
}

export const snpSource: EvidenceSource = makeSnpSource();
