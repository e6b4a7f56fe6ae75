import { describe, expect, it } from "vitest";
import { configSchema } from "../../../agent/config/schema.ts";
import { probeAll, selectSource } from "../../../agent/select.ts";
import { evidenceSources } from "../../../platform/registry.ts";
import type { EvidenceSource, PlatformEnv, Probe, SourceId, TeeName } from "../../../platform/types.ts";
import { Deadline } from "../../../platform/util/deadline.ts";
import { silentLogger } from "../../../platform/util/log.ts";

const env: PlatformEnv = {
  paths: { root: "/nonexistent-root", tsmReport: "/nonexistent-root/sys/kernel/config/tsm/report" },
  tpm: { spec: "/nonexistent-root/dev/tpmrm0", akHandle: 0x81010002 },
  azure: { metadataUrl: "http://127.0.0.1:9", legacyTeeNames: false },
  deadline: new Deadline(5000),
  log: silentLogger,
};
const platform = (p: object) => configSchema.parse({ platform: p }, "").platform;

/** A scripted source: its probe result (or a throw) is all that selection looks at. */
function scripted(id: SourceId, tee: TeeName, probe: Omit<Probe, "source"> | Error): EvidenceSource {
  return {
    id,
    tees: [tee],
    insecure: false,
    probe: async () => {
      if (probe instanceof Error) throw probe;
      return { source: id, ...probe } as Probe;
    },
    collect: async () => {
      throw new Error("unused");
    },
  };
}
const presentTpm = scripted("tpm", "tpm", { status: "present", tee: "tpm", reason: "ok" });

describe("evidence source selection", () => {
  it("never auto-selects sample, even when allowed", async () => {
    const c = await probeAll(env, platform({ allow_sample: true }), evidenceSources);
    const sample = c.find((x) => x.source.id === "sample")!;
    expect(sample.chosen).toBe(false);
    expect(sample.why).toMatch(/never auto-selected/);
    await expect(selectSource(env, platform({ allow_sample: true }), evidenceSources)).rejects.toMatchObject({
      kind: "platform",
    });
  });

  it("refuses a forced sample without allow_sample, with a hint", async () => {
    await expect(selectSource(env, platform({ tee: "sample" }), evidenceSources)).rejects.toMatchObject({
      kind: "config",
      hint: expect.stringMatching(/allow_sample/),
    });
  });

  it("uses sample when forced and allowed", async () => {
    const s = await selectSource(env, platform({ tee: "sample", allow_sample: true }), evidenceSources);
    expect(s.tee).toBe("sample");
  });

  it("the registry cannot be changed behind the agent's back", () => {
    expect(Object.isFrozen(evidenceSources)).toBe(true);
  });
});

describe("fail-closed auto-detection: a broken source blocks fallback", () => {
  for (const [what, first] of [
    ["a probe that throws", scripted("snp", "snp", new Error("HCL report: field 'report_size' at offset 8: bad"))],
    [
      "a probe that reports broken",
      scripted("tdx", "tdx", { status: "broken", reason: "cpu flag tdx_guest but no driver", hint: "modprobe" }),
    ],
  ] as const) {
    it(`${what}: the later present source is not used, unless the config forces it`, async () => {
      const sources = [first, presentTpm];
      const c = await probeAll(env, platform({}), sources);
      expect(c[0]!.probe.status).toBe("broken");
      expect(c[1]!.chosen).toBe(false);
      expect(c[1]!.why).toMatch(new RegExp(`${first.id} is broken \\(refusing to fall back`));
      await expect(selectSource(env, platform({}), sources)).rejects.toMatchObject({
        kind: "platform",
        message: expect.stringMatching(/report_size|no driver/),
      });
      // Forcing the other source is the operator's explicit choice and still works.
      await expect(selectSource(env, platform({ tee: "tpm" }), sources)).resolves.toMatchObject({ tee: "tpm" });
    });
  }

  it("a forced tee probes only its own source (the others cost TPM and configfs round trips)", async () => {
    let probed = 0;
    const snp = scripted("snp", "snp", { status: "broken", reason: "x" });
    const counting: EvidenceSource = { ...snp, probe: (e) => (probed++, snp.probe(e)) };
    await expect(selectSource(env, platform({ tee: "tpm" }), [counting, presentTpm])).resolves.toMatchObject({
      tee: "tpm",
    });
    expect(probed).toBe(0);
    await expect(selectSource(env, platform({}), [counting, presentTpm])).rejects.toMatchObject({ kind: "platform" });
    expect(probed).toBe(1);
  });

  it("an absent source is passed over; a broken source after the chosen one changes nothing", async () => {
    const absent = scripted("snp", "snp", { status: "absent", reason: "no sev-guest" });
    const broken = scripted("tdx", "tdx", { status: "broken", reason: "x" });
    const c = await probeAll(env, platform({}), [absent, presentTpm, broken]);
    expect(c.map((x) => x.chosen)).toEqual([false, true, false]);
    expect(c[0]!.why).toBe("not present");
    await expect(selectSource(env, platform({}), [absent, presentTpm, broken])).resolves.toMatchObject({ tee: "tpm" });
  });

  it("a forced tee picks the source that lists it, and refuses a different tee from it", async () => {
    const az = scripted("azure-vtpm", "az-snp-vtpm", { status: "present", tee: "az-tdx-vtpm", reason: "HCL TDX" });
    const sources = [{ ...az, tees: ["az-snp-vtpm", "az-tdx-vtpm"] as TeeName[] }, presentTpm];
    const c = await probeAll(env, platform({ tee: "az-snp-vtpm" }), sources);
    expect(c[0]!.why).toMatch(/present as az-tdx-vtpm, but the config forces az-snp-vtpm/);
    expect(c[1]!.why).toMatch(/config forces tee az-snp-vtpm/);
    await expect(selectSource(env, platform({ tee: "az-tdx-vtpm" }), sources)).resolves.toMatchObject({
      tee: "az-tdx-vtpm",
    });
  });
});
