import { describe, expect, it } from "vitest";
import { configSchema } from "../../../agent/config/schema.ts";
import { probeAll, selectSource } from "../../../agent/select.ts";
import type { PlatformEnv } from "../../../platform/types.ts";
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

describe("evidence source selection", () => {
  it("never auto-selects sample, even when allowed", async () => {
    const c = await probeAll(env, platform({ allow_sample: true }));
    const sample = c.find((x) => x.source.id === "sample")!;
    expect(sample.chosen).toBe(false);
    expect(sample.why).toMatch(/never auto-selected/);
    await expect(selectSource(env, platform({ allow_sample: true }))).rejects.toMatchObject({ kind: "platform" });
  });

  it("refuses a forced sample without allow_sample, with a hint", async () => {
    await expect(selectSource(env, platform({ tee: "sample" }))).rejects.toMatchObject({
      kind: "config",
      hint: expect.stringMatching(/allow_sample/),
    });
  });

  it("uses sample when forced and allowed", async () => {
    const s = await selectSource(env, platform({ tee: "sample", allow_sample: true }));
    expect(s.tee).toBe("sample");
  });
});

describe("fail-closed auto-detection", () => {
  it("does not fall back to a later source when an earlier probe fails", async () => {
    const { sources } = await import("../../../platform/registry.ts");
    const broken = {
      id: "snp" as const,
      insecure: false,
      probe: async () => {
        throw new Error("HCL report: field 'report_size' at offset 8: bad");
      },
      collect: async () => {
        throw new Error("unused");
      },
    };
    const fine = {
      id: "tpm" as const,
      insecure: false,
      probe: async () => ({ source: "tpm" as const, present: true, tee: "tpm" as const, reason: "ok" }),
      collect: async () => {
        throw new Error("unused");
      },
    };
    const saved = sources.splice(0, sources.length, broken, fine);
    try {
      const c = await probeAll(env, platform({}));
      expect(c[0]!.failed).toBe(true);
      expect(c[1]!.chosen).toBe(false);
      expect(c[1]!.why).toMatch(/probe of snp failed/);
      await expect(selectSource(env, platform({}))).rejects.toMatchObject({
        kind: "platform",
        message: expect.stringMatching(/report_size/),
      });
      // Forcing the other source is the operator's explicit choice and still works.
      await expect(selectSource(env, platform({ tee: "tpm" }))).resolves.toMatchObject({ tee: "tpm" });
    } finally {
      sources.splice(0, sources.length, ...saved);
    }
  });
});
