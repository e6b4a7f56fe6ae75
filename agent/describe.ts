// Platform details for people (`detect`, `evidence --decode`): the TPM (EK certificates, event log
// replayed against the PCRs) for TPM-based sources, and decoded SNP/TDX evidence. Never secrets.
import type { Evidence, PlatformEnv, SourceId } from "../platform/types.ts";
import { errorMessage } from "../platform/util/errors.ts";
import { utf8 } from "../platform/util/bytes.ts";

const TPM_SOURCES: SourceId[] = ["tpm", "azure-vtpm"];

/** Lines describing the TPM behind a TPM-based source, or [] for other sources. */
export async function describePlatform(env: PlatformEnv, source: SourceId): Promise<string[]> {
  if (!TPM_SOURCES.includes(source)) return [];
  const { withTpm, describeTpm, formatTpmDescription } = await import("../platform/tpm/index.ts");
  try {
    const root = env.paths.root;
    const d = await withTpm(
      env.tpm.spec,
      env.deadline,
      env.log,
      (tpm) => describeTpm(tpm, { eventLogRoot: root }),
      root !== "/" ? { root } : {},
    );
    return formatTpmDescription(d);
  } catch (e) {
    return [`TPM details unavailable: ${errorMessage(e)}`];
  }
}

/** Decoded SNP/TDX evidence (measurement, TCB, report_data, RTMR replay), or [] for other TEEs. */
export async function describeEvidence(ev: Evidence): Promise<string[]> {
  if (ev.tee !== "snp" && ev.tee !== "tdx") return [];
  const { inspectEvidenceJson } = await import("./inspect/evidence.ts");
  const { renderText } = await import("./inspect/render.ts");
  try {
    return renderText(inspectEvidenceJson(utf8(JSON.stringify(ev.primary)))).split("\n");
  } catch (e) {
    return [`evidence could not be decoded: ${errorMessage(e)}`];
  }
}
