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
    await expect(selectSource(env, platform({ tee: "sample" }))).rejects.toMatchObject({ kind: "config", hint: expect.stringMatching(/allow_sample/) });
  });

  it("uses sample when forced and allowed", async () => {
    const s = await selectSource(env, platform({ tee: "sample", allow_sample: true }));
    expect(s.tee).toBe("sample");
  });
});
