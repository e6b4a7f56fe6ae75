// Choosing the evidence source: auto-detection in registry order, or the one the config forces.
// `sample` is never auto-selected and needs allow_sample from the trusted config (or the tester's flag).
import { sources } from "../platform/registry.ts";
import type { EvidenceSource, PlatformEnv, Probe, SourceId, TeeName } from "../platform/types.ts";
import { CvmError, errorMessage } from "../platform/util/errors.ts";
import type { PlatformConfig } from "./config/schema.ts";

export interface Candidate {
  source: EvidenceSource;
  probe: Probe;
  /** The probe failed (as opposed to finding nothing): malformed host data or a broken device. */
  failed: boolean;
  chosen: boolean;
  why: string;
}

const SOURCE_FOR_TEE: Record<string, SourceId> = {
  snp: "snp",
  tdx: "tdx",
  tpm: "tpm",
  "az-snp-vtpm": "azure-vtpm",
  "az-tdx-vtpm": "azure-vtpm",
  sample: "sample",
};

async function safeProbe(src: EvidenceSource, env: PlatformEnv): Promise<{ probe: Probe; failed: boolean }> {
  try {
    return { probe: await src.probe(env), failed: false };
  } catch (e) {
    const probe = {
      source: src.id,
      present: false,
      reason: `probe failed: ${errorMessage(e)}`,
      ...(e instanceof CvmError && e.hint ? { hint: e.hint } : {}),
    };
    return { probe, failed: true };
  }
}

/** Probe every source (for `detect`) and mark the one that would be chosen. */
export async function probeAll(env: PlatformEnv, cfg: PlatformConfig): Promise<Candidate[]> {
  const out: Candidate[] = [];
  let chosen = false;
  // Auto-detection stops at a source whose probe failed: a host that corrupts, say, the Azure HCL
  // report must not downgrade the evidence to a weaker source that the KBS might also accept.
  let blockedBy: string | undefined;
  const forced = cfg.tee === "auto" ? undefined : SOURCE_FOR_TEE[cfg.tee];
  for (const source of sources) {
    const { probe, failed } = await safeProbe(source, env);
    let why: string;
    let take = false;
    if (failed) {
      why = "probe failed";
      if (forced === undefined && !chosen) blockedBy ??= source.id;
    } else if (!probe.present) why = "not present";
    else if (forced !== undefined && source.id !== forced) why = `present, but the config forces tee ${cfg.tee}`;
    else if (
      forced !== undefined &&
      cfg.tee !== "sample" &&
      source.id === "azure-vtpm" &&
      probe.tee !== cfg.tee &&
      !isLegacyAlias(probe.tee, cfg.tee)
    )
      why = `present as ${probe.tee}, but the config forces ${cfg.tee}`;
    else if (source.insecure && !cfg.allow_sample) why = "insecure: needs allow_sample in the trusted config";
    else if (source.insecure && forced === undefined) why = "insecure: never auto-selected (set tee to sample)";
    else if (chosen) why = "present, but an earlier source takes precedence";
    else if (blockedBy !== undefined)
      why = `present, but not used: the probe of ${blockedBy} failed (refusing to fall back to a weaker source)`;
    else {
      take = true;
      why = forced !== undefined ? `forced by config (tee ${cfg.tee})` : "first present source in detection order";
    }
    if (take) chosen = true;
    out.push({ source, probe, failed, chosen: take, why });
  }
  return out;
}

function isLegacyAlias(actual: TeeName | undefined, wanted: string): boolean {
  return (actual === "azsnpvtpm" && wanted === "az-snp-vtpm") || (actual === "aztdxvtpm" && wanted === "az-tdx-vtpm");
}

/** Forcing the insecure sample TEE needs allow_sample (also checked by `config --check`). */
export function checkTeeAllowed(cfg: PlatformConfig): void {
  if (cfg.tee === "sample" && !cfg.allow_sample)
    throw new CvmError("config", "tee 'sample' is insecure and not allowed", {
      hint: "set platform.allow_sample in the trusted config, or pass --allow-sample when testing",
    });
}

/** The source to attest with, or a platform/config error that says what to do. */
export async function selectSource(
  env: PlatformEnv,
  cfg: PlatformConfig,
): Promise<{ source: EvidenceSource; tee: TeeName; candidates: Candidate[] }> {
  checkTeeAllowed(cfg);
  const candidates = await probeAll(env, cfg);
  const pick = candidates.find((c) => c.chosen);
  if (pick && pick.probe.tee) return { source: pick.source, tee: pick.probe.tee, candidates };
  const relevant =
    cfg.tee === "auto"
      ? candidates.filter((c) => !c.source.insecure)
      : candidates.filter((c) => c.source.id === SOURCE_FOR_TEE[cfg.tee]);
  const reasons = relevant.map((c) => `${c.source.id}: ${c.probe.reason}`).join("; ");
  const hints = relevant.map((c) => c.probe.hint).filter((h): h is string => !!h);
  throw new CvmError(
    "platform",
    cfg.tee === "auto" ? `no evidence source found (${reasons})` : `tee ${cfg.tee} is not available (${reasons})`,
    {
      ...(hints.length ? { hint: hints.join("; ") } : {}),
    },
  );
}
