// Evidence source "azure-vtpm": Azure confidential VMs, where the guest reaches the SNP report or
// TDREPORT only through the paravisor's vTPM (HCL report at NV 0x01400001) and trustee verifies
// `az-snp-vtpm` / `az-tdx-vtpm` evidence (docs/spec/kbs-protocol.md §4.5–4.6).
import { checkRuntimeDigest } from "../types.ts";
import type { Evidence, EvidenceRequest, EvidenceSource, PlatformEnv, Probe, TeeName } from "../types.ts";
import { CvmError, errorMessage } from "../util/errors.ts";
import { withTpm } from "../tpm/client.ts";
import { hex32 } from "../tpm/constants.ts";
import { describeTpmPlatform } from "../tpm/describe.ts";
import { nvReadPublicIfPresent } from "../tpm/operations.ts";
import { tpmPresent } from "../tpm/transport/index.ts";
import { HCL_REPORT_NV_INDEX } from "./constants.ts";
import { snpEvidence, tdxEvidence } from "./evidence.ts";
import { parseHclReport, type HclReport, type HclTee } from "./hcl.ts";
import { fetchTdQuote, fetchVcek, type MetadataOptions } from "./metadata.ts";
import { azureQuote, readHclReportNv, waitForHclReport, writeReportData } from "./vtpm.ts";

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

/** What the probe found on the TPM: no HCL index, its blob, or why the existing index cannot be read. */
type HclLookup = { kind: "none" } | { kind: "blob"; blob: Uint8Array } | { kind: "unreadable"; error: unknown };

async function probe(env: PlatformEnv): Promise<Probe> {
  const source = "azure-vtpm" as const;
  const where = `NV ${hex32(HCL_REPORT_NV_INDEX)}`;
  if (!tpmPresent(env.tpm.spec, env.paths.root))
    return { source, status: "absent", reason: `no TPM at ${env.tpm.spec} (an Azure CVM has the paravisor's vTPM)` };
  let found: HclLookup;
  try {
    found = await withTpm(
      env.tpm.spec,
      env.deadline,
      env.log,
      async (tpm): Promise<HclLookup> => {
        const pub = await nvReadPublicIfPresent(tpm, HCL_REPORT_NV_INDEX);
        if (!pub) return { kind: "none" };
        try {
          return { kind: "blob", blob: await readHclReportNv(tpm, pub) };
        } catch (error) {
          return { kind: "unreadable", error };
        }
      },
      { root: env.paths.root, connectTimeoutMs: PROBE_CONNECT_MS },
    );
  } catch (e) {
    // Without an answering TPM nothing says "Azure": absent here; the tpm source reports the TPM as broken.
    return {
      source,
      status: "absent",
      reason: `no usable TPM at ${env.tpm.spec}: ${errorMessage(e)}`,
      ...(e instanceof CvmError && e.hint ? { hint: e.hint } : {}),
    };
  }
  if (found.kind === "none")
    return { source, status: "absent", reason: `TPM has no HCL report at ${where} (not an Azure CVM)` };
  // The HCL index exists: this is an Azure paravisor, so from here on a failure is broken.
  const hint = "the paravisor's HCL report is unusable: report it to the cloud provider; do not fall back";
  if (found.kind === "unreadable")
    return {
      source,
      status: "broken",
      reason: `the HCL report at ${where} cannot be read: ${errorMessage(found.error)}`,
      hint,
    };
  let report: HclReport;
  try {
    report = parseHclReport(found.blob);
  } catch (e) {
    return { source, status: "broken", reason: `the HCL report at ${where} is malformed: ${errorMessage(e)}`, hint };
  }
  const tee = teeName(report.tee, env.azure.legacyTeeNames);
  return {
    source,
    status: "present",
    tee,
    reason: `Azure paravisor vTPM: the HCL report at ${where} holds a ${report.tee.toUpperCase()} report (tee ${tee})`,
    details: {
      hcl_version: String(report.version),
      hcl_report_bytes: String(found.blob.length),
      hardware_report: report.tee,
      ak_in_claims: report.akPub ? "yes" : "no",
    },
  };
}

export function makeAzureVtpmSource(): EvidenceSource {
  return {
    id: "azure-vtpm",
    // Which of these a probe reports depends on the hardware report inside the HCL report and on azure_legacy_tee_names.
    tees: ["az-snp-vtpm", "az-tdx-vtpm", "azsnpvtpm", "aztdxvtpm"],
    insecure: false,
    probe,
    collect,
    describe: describeTpmPlatform,
  };
}

async function collect(env: PlatformEnv, req: EvidenceRequest): Promise<Evidence> {
  checkRuntimeDigest(req, "the HCL report's user data");
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
}
