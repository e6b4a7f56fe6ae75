// Choosing the evidence source: auto-detection in registry order, or the one the config forces.
// `sample` is never auto-selected and needs allow_sample from the trusted config (or the tester's flag).
import { blocksFallback, type EvidenceSource, type PlatformEnv, type Probe, type TeeName } from "../platform/types.ts";
import { CvmError, errorMessage } from "../platform/util/errors.ts";
import type { PlatformConfig } from "./config/schema.ts";

export interface Candidate {
  source: EvidenceSource;
  probe: Probe;
  chosen: boolean;
  why: string;
}

/** A probe that throws broke the contract's "never throws"; it is treated as broken (fail closed). */
async function safeProbe(src: EvidenceSource, env: PlatformEnv): Promise<Probe> {
  try {
    return await src.probe(env);
  } catch (e) {
    return {
      source: src.id,
      status: "broken",
      reason: `probe failed: ${errorMessage(e)}`,
      ...(e instanceof CvmError && e.hint ? { hint: e.hint } : {}),
    };
  }
}

function forcedSource(sources: readonly EvidenceSource[], tee: string): EvidenceSource | undefined {
  return sources.find((s) => (s.tees as readonly string[]).includes(tee));
}

/** Probe every source in `sources` (detection order; for `detect`) and mark the one that would be chosen. */
export async function probeAll(
  env: PlatformEnv,
  cfg: PlatformConfig,
  sources: readonly EvidenceSource[],
): Promise<Candidate[]> {
  const out: Candidate[] = [];
  let chosen = false;
  // Auto-detection stops at a broken source: a host that corrupts, say, the Azure HCL report or
  // unloads the TDX driver must not downgrade the evidence to a weaker source the KBS might accept.
  let blockedBy: string | undefined;
  const forced = cfg.tee === "auto" ? undefined : forcedSource(sources, cfg.tee);
  for (const source of sources) {
    const probe = await safeProbe(source, env);
    let why: string;
    let take = false;
    if (blocksFallback(probe)) {
      why = "broken: the platform is there, but its report interface is not usable";
      if (forced === undefined && !chosen) blockedBy ??= source.id;
    } else if (probe.status === "absent") why = "not present";
    else if (forced !== undefined && source !== forced) why = `present, but the config forces tee ${cfg.tee}`;
    else if (forced !== undefined && probe.tee !== cfg.tee && !isLegacyAlias(probe.tee, cfg.tee))
      why = `present as ${probe.tee}, but the config forces ${cfg.tee}`;
    else if (source.insecure && !cfg.allow_sample) why = "insecure: needs allow_sample in the trusted config";
    else if (source.insecure && forced === undefined) why = "insecure: never auto-selected (set tee to sample)";
    else if (chosen) why = "present, but an earlier source takes precedence";
    else if (blockedBy !== undefined)
      why = `present, but not used: ${blockedBy} is broken (refusing to fall back to a weaker source)`;
    else {
      take = true;
      why = forced !== undefined ? `forced by config (tee ${cfg.tee})` : "first present source in detection order";
    }
    if (take) chosen = true;
    out.push({ source, probe, chosen: take, why });
  }
  return out;
}

function isLegacyAlias(actual: TeeName, wanted: string): boolean {
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
  sources: readonly EvidenceSource[],
): Promise<{ source: EvidenceSource; tee: TeeName; candidates: Candidate[] }> {
  checkTeeAllowed(cfg);
  // A forced tee needs only its own source: the others' probes cost TPM and configfs round trips.
  const forced = cfg.tee === "auto" ? undefined : forcedSource(sources, cfg.tee);
  const candidates = await probeAll(env, cfg, forced ? [forced] : sources);
  const pick = candidates.find((c) => c.chosen);
  if (pick && pick.probe.status === "present") return { source: pick.source, tee: pick.probe.tee, candidates };
  const relevant =
    cfg.tee === "auto"
      ? candidates.filter((c) => !c.source.insecure)
      : candidates.filter((c) => c.source === forcedSource(sources, cfg.tee));
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
