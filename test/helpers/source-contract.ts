// The checks of the evidence-source contract (platform/types.ts) that need a source on a stand-in
// platform, shared by test/unit/platform/conformance.test.ts (in-process stand-ins) and
// test/integration/source-conformance.test.ts (swtpm-backed stand-ins).
import { expect } from "vitest";
import {
  MAX_RUNTIME_DIGEST,
  type Evidence,
  type EvidenceSource,
  type PlatformEnv,
  type Probe,
  type SourceId,
} from "../../platform/types.ts";
import { CvmError } from "../../platform/util/errors.ts";

/** Sources whose present + collect checks need swtpm, so they run in the integration project. */
export const PRESENT_IN_INTEGRATION = ["tpm", "azure-vtpm"] as const satisfies readonly SourceId[];

export function checkProbe(source: EvidenceSource, p: Probe): void {
  expect(p.source).toBe(source.id);
  expect(["present", "absent", "broken"]).toContain(p.status);
  expect(typeof p.reason).toBe("string");
  expect(p.reason.length).toBeGreaterThan(5);
  if (p.status === "present") expect(source.tees).toContain(p.tee);
  else expect(p.tee).toBeUndefined();
  for (const v of Object.values(p.details ?? {})) expect(typeof v).toBe("string");
}

function checkEvidence(source: EvidenceSource, ev: Evidence, tee: string): void {
  expect(ev.tee).toBe(tee);
  expect(source.tees).toContain(ev.tee);
  // primary_evidence goes into JSON as is: no bytes, bigints or undefined hiding in it.
  expect(ev.primary).not.toBeNull();
  expect(JSON.parse(JSON.stringify(ev.primary))).toEqual(ev.primary);
  for (const ms of Object.values(ev.timings ?? {})) expect(ms).toBeGreaterThanOrEqual(0);
}

/** On a platform where `source` is present: evidence of the probed tee, bound to the digest, bounded input. */
export async function checkPresentSource(source: EvidenceSource, env: PlatformEnv): Promise<void> {
  const p = await source.probe(env);
  checkProbe(source, p);
  expect(p.status, p.reason).toBe("present");
  const tee = p.tee!;
  const a = await source.collect(env, { runtimeDigest: new Uint8Array(48).fill(1), tee });
  const b = await source.collect(env, { runtimeDigest: new Uint8Array(48).fill(2), tee });
  checkEvidence(source, a, tee);
  checkEvidence(source, b, tee);
  expect(JSON.stringify(a.primary)).not.toBe(JSON.stringify(b.primary));
  const tooLong = await source
    .collect(env, { runtimeDigest: new Uint8Array(MAX_RUNTIME_DIGEST + 1), tee })
    .catch((e: unknown) => e);
  expect(tooLong).toBeInstanceOf(CvmError);
  expect((tooLong as CvmError).message).toMatch(/does not fit/);
}
