// Platform details for people (`detect`, `evidence --decode`): what the chosen source describes
// (the TPM's EK certificates and event-log replay for TPM-based sources), and decoded SNP/TDX
// evidence. Never secrets.
import type { Evidence, EvidenceSource, PlatformEnv } from "../platform/types.ts";
import { errorMessage } from "../platform/util/errors.ts";
import { utf8 } from "../platform/util/bytes.ts";

/** What the source says about its platform (EvidenceSource.describe), or [] when it has nothing to add. */
export async function describePlatform(env: PlatformEnv, source: EvidenceSource): Promise<string[]> {
  return source.describe ? source.describe(env) : [];
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
