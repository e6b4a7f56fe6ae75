// Evidence source "azure-vtpm": Azure confidential VMs, where the guest reaches the SNP report or
// TDREPORT only through the paravisor's vTPM (HCL report at NV 0x01400001) and trustee verifies
// `az-snp-vtpm` / `az-tdx-vtpm` evidence (docs/spec/kbs-protocol.md §4.5–4.6).
import type { EvidenceSource, PlatformEnv, Probe, TeeName } from "../types.ts";
import { CvmError, errorMessage } from "../util/errors.ts";
import { withTpm } from "../tpm/client.ts";
import { hex32 } from "../tpm/constants.ts";
import { HCL_REPORT_NV_INDEX } from "./constants.ts";
import { snpEvidence, tdxEvidence } from "./evidence.ts";
import { parseHclReport, type HclTee } from "./hcl.ts";
import { fetchTdQuote, fetchVcek, type MetadataOptions } from "./metadata.ts";
import { azureQuote, readHclReportBlob, waitForHclReport, writeReportData } from "./vtpm.ts";

/** How long the paravisor gets to regenerate the HCL report (Azure's own tool sleeps 3 s). */
const HCL_REFRESH_TIMEOUT_MS = 10_000;
const PROBE_CONNECT_MS = 2_000;

function teeName(tee: HclTee, legacy: boolean): TeeName {
  if (tee === "snp") return legacy ? "azsnpvtpm" : "az-snp-vtpm";
  return legacy ? "aztdxvtpm" : "az-tdx-vtpm";
}

function hclTeeOf(tee: TeeName): HclTee {
  if (tee === "az-snp-vtpm" || tee === "azsnpvtpm") return "snp";
  if (tee === "az-tdx-vtpm" || tee === "aztdxvtpm") return "tdx";
  throw new CvmError("internal", `azure-vtpm cannot produce tee ${tee}`);
}

function metadataOptions(env: PlatformEnv): MetadataOptions {
  return { baseUrl: env.azure.metadataUrl, deadline: env.deadline, log: env.log };
}

async function timed<T>(timings: Record<string, number>, step: string, fn: () => Promise<T>): Promise<T> {
  const t0 = performance.now();
  try {
    return await fn();
  } finally {
    timings[step] = Math.round((performance.now() - t0) * 10) / 10;
  }
}

export const azureVtpmSource: EvidenceSource = {
  id: "azure-vtpm",
  insecure: false,

  async probe(env): Promise<Probe> {
    const base = { source: "azure-vtpm" as const };
    let blob: Uint8Array | undefined;
    try {
      blob = await withTpm(env.tpm.spec, env.deadline, env.log, readHclReportBlob, {
        root: env.paths.root,
        connectTimeoutMs: PROBE_CONNECT_MS,
      });
    } catch (e) {
      return {
        ...base,
        present: false,
        reason: `no usable TPM at ${env.tpm.spec}: ${errorMessage(e)}`,
        ...(e instanceof CvmError && e.hint ? { hint: e.hint } : {}),
      };
    }
    if (!blob)
      return {
        ...base,
        present: false,
        reason: `TPM has no HCL report at NV ${hex32(HCL_REPORT_NV_INDEX)} (not an Azure CVM)`,
      };
    const report = parseHclReport(blob);
    const tee = teeName(report.tee, env.azure.legacyTeeNames);
    return {
      ...base,
      present: true,
      tee,
      reason: `Azure paravisor vTPM: the HCL report at NV ${hex32(HCL_REPORT_NV_INDEX)} holds a ${report.tee.toUpperCase()} report (tee ${tee})`,
      details: {
        hcl_version: String(report.version),
        hcl_report_bytes: String(blob.length),
        hardware_report: report.tee,
        ak_in_claims: report.akPub ? "yes" : "no",
      },
    };
  },

  async collect(env, req) {
    const want = hclTeeOf(req.tee);
    const timings: Record<string, number> = {};
    const md = metadataOptions(env);
    // The VCEK does not depend on the report: fetch it while the TPM works.
    const vcek = want === "snp" ? timed(timings, "azure-vcek", () => fetchVcek(md)) : undefined;
    vcek?.catch(() => {}); // awaited below; keep an early failure from being "unhandled"
    const { report, quote } = await withTpm(
      env.tpm.spec,
      env.deadline,
      env.log,
      async (tpm) => {
        await timed(timings, "azure-nv-write", () => writeReportData(tpm, req.runtimeDigest));
        const fresh = await timed(timings, "azure-hcl-wait", () =>
          waitForHclReport(tpm, req.runtimeDigest, { timeoutMs: HCL_REFRESH_TIMEOUT_MS }),
        );
        env.log.debug("HCL report refreshed", { polls: fresh.polls });
        const q = await timed(timings, "azure-quote", () => azureQuote(tpm, req.runtimeDigest));
        return { report: fresh.report, quote: q };
      },
      { root: env.paths.root },
    );
    if (report.tee !== want)
      throw new CvmError(
        "evidence",
        `asked for ${req.tee}, but the HCL report holds a ${report.tee.toUpperCase()} hardware report`,
      );
    if (!report.akPub) env.log.warning("HCL runtime claims carry no HCLAkPub key; the verifier will reject the quote");
    if (want === "snp") {
      const { vcek: der } = await vcek!;
      return { tee: req.tee, primary: snpEvidence(quote, report.raw, der), timings };
    }
    const tdQuote = await timed(timings, "azure-td-quote", () => fetchTdQuote(md, report.hardwareReport));
    return { tee: req.tee, primary: tdxEvidence(quote, report.raw, tdQuote), timings };
  },
};
