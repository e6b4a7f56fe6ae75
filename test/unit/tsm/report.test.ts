import * as fs from "node:fs";
import * as path from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { probeTsmProvider, requestTsmReport } from "../../../platform/tsm/report.ts";
import type { PlatformEnv } from "../../../platform/types.ts";
import { Deadline } from "../../../platform/util/deadline.ts";
import { CvmError } from "../../../platform/util/errors.ts";
import { silentLogger } from "../../../platform/util/log.ts";
import { FakeTsm, fakePaths, type FakeTsmOptions } from "../../helpers/fake-tsm.ts";

const fakes: FakeTsm[] = [];
afterEach(async () => {
  for (const f of fakes.splice(0)) await f.stop();
});

function start(opts: Partial<FakeTsmOptions> = {}): FakeTsm {
  const f = FakeTsm.start({
    provider: "sev_guest",
    outblobFor: (inblob, ctx) =>
      Buffer.concat([Buffer.from(`gen${ctx.generation} vmpl${ctx.privlevel ?? "-"} `), inblob]),
    ...opts,
  });
  fakes.push(f);
  return f;
}

function envFor(f: FakeTsm, deadlineMs = 10_000): PlatformEnv {
  return {
    paths: fakePaths(f),
    tpm: { spec: "/dev/tpmrm0", akHandle: 0x81010002 },
    azure: { metadataUrl: "http://169.254.169.254", legacyTeeNames: false },
    deadline: new Deadline(deadlineMs),
    log: silentLogger,
  };
}

const inblob = new Uint8Array(64).map((_, i) => i);

describe("configfs-tsm report through the stand-in kernel", () => {
  it("writes inblob once, reads outblob + auxblob of the same generation, removes its entry", async () => {
    const f = start({ auxblobFor: (ib) => Buffer.from(`aux:${ib[1]}`) });
    const r = await requestTsmReport(envFor(f), {
      inblob,
      privlevel: 0,
      wantAuxblob: true,
      expectProvider: "sev_guest",
    });
    expect(r.provider).toBe("sev_guest");
    expect(r.generation).toBe(2); // inblob + privlevel
    expect(Buffer.from(r.outblob).toString("latin1", 0, 11)).toBe("gen2 vmpl0 ");
    expect(Buffer.from(r.outblob.subarray(11))).toEqual(Buffer.from(inblob));
    expect(Buffer.from(r.auxblob!).toString()).toBe("aux:1");
    expect(r.attempts).toBe(1);
    expect(f.liveEntries()).toEqual([]);
    expect(f.requests.at(-1)!.inblob).toEqual(inblob);
  });

  it("without privlevel the generation is 1 and no auxblob is read", async () => {
    const f = start({ provider: "tdx_guest" });
    const r = await requestTsmReport(envFor(f), { inblob, expectProvider: "tdx_guest" });
    expect(r.generation).toBe(1);
    expect(r.auxblob).toBeUndefined();
  });

  it("serialises concurrent requests (each gets its own report)", async () => {
    const f = start();
    const env = envFor(f);
    const blobs = [1, 2, 3].map((k) => new Uint8Array(64).fill(k));
    const rs = await Promise.all(blobs.map((b) => requestTsmReport(env, { inblob: b })));
    rs.forEach((r, i) => expect(r.outblob.at(-1)).toBe(i + 1));
    expect(f.liveEntries()).toEqual([]);
  });

  it("refuses a wrong provider and still removes the entry", async () => {
    const f = start({ provider: "tdx_guest" });
    await expect(requestTsmReport(envFor(f), { inblob, expectProvider: "sev_guest" })).rejects.toThrow(
      /provider is 'tdx_guest', expected 'sev_guest'/,
    );
    expect(f.liveEntries()).toEqual([]);
  });

  it("retries with a fresh entry when another writer bumps the generation, then gives up", async () => {
    let tampered = 0;
    const f = start({
      afterGenerate: ({ generation, files }) => {
        tampered++;
        files.write("generation", `${generation + 1}\n`);
      },
    });
    await expect(requestTsmReport(envFor(f), { inblob })).rejects.toThrow(/kept changing under us after 3 attempts/);
    expect(tampered).toBe(3);
    expect(f.liveEntries()).toEqual([]);
  });

  it("recovers when only the first entry races", async () => {
    let n = 0;
    const f = start({
      afterGenerate: ({ generation, files }) => void (n++ === 0 && files.write("generation", `${generation + 5}\n`)),
    });
    const r = await requestTsmReport(envFor(f), { inblob });
    expect(r.attempts).toBe(2);
  });

  it("a provider that changes between reads is refused", async () => {
    const f = start({ afterGenerate: ({ files }) => files.write("provider", "tdx_guest\n") });
    await expect(requestTsmReport(envFor(f), { inblob })).rejects.toThrow(
      /provider changed from 'sev_guest' to 'tdx_guest'/,
    );
    expect(f.liveEntries()).toEqual([]);
  });

  it("an oversized outblob is refused without reading it all", async () => {
    const f = start({ outblobFor: () => new Uint8Array(70 * 1024) });
    const err = await requestTsmReport(envFor(f), { inblob }).catch((e) => e);
    expect(err).toBeInstanceOf(CvmError);
    expect(String(err.message)).toMatch(/outblob is larger than the limit of 65536 bytes/);
    expect(f.liveEntries()).toEqual([]);
  });

  it("an oversized auxblob is refused", async () => {
    const f = start({ auxblobFor: () => new Uint8Array(300 * 1024) });
    await expect(requestTsmReport(envFor(f), { inblob, wantAuxblob: true })).rejects.toThrow(
      /auxblob is larger than the limit/,
    );
    expect(f.liveEntries()).toEqual([]);
  });

  it("garbage in generation/provider gives a ParseError naming the attribute", async () => {
    const f = start({ afterGenerate: ({ files }) => files.write("generation", "two\n") });
    await expect(requestTsmReport(envFor(f), { inblob })).rejects.toThrow(/generation.*not a decimal counter/);
    expect(f.liveEntries()).toEqual([]);
  });

  it("a missing report directory is a platform error with a hint", async () => {
    const f = start();
    const env = envFor(f);
    env.paths = { root: f.root, tsmReport: path.join(f.root, "nope") };
    const err = await requestTsmReport(env, { inblob }).catch((e) => e);
    expect(err).toBeInstanceOf(CvmError);
    expect(err.kind).toBe("platform");
  });

  it("a dead stand-in kernel is a bounded wait, not a hang", async () => {
    const f = start();
    await f.stop();
    fs.mkdirSync(f.reportDir, { recursive: true });
    fakes.length = 0;
    const t0 = Date.now();
    await expect(requestTsmReport(envFor(f, 300), { inblob })).rejects.toThrow(/deadline|did not happen/);
    expect(Date.now() - t0).toBeLessThan(2000);
    expect(fs.readdirSync(f.reportDir)).toEqual([]);
    fs.rmSync(f.root, { recursive: true, force: true });
  });

  it("rejects a bad inblob size before touching configfs", async () => {
    const f = start();
    expect(() => requestTsmReport(envFor(f), { inblob: new Uint8Array(32) })).toThrow(/64 bytes/);
  });

  it("probe reports the provider and leaves nothing behind", async () => {
    const f = start({ provider: "tdx_guest" });
    const p = await probeTsmProvider(envFor(f));
    expect(p).toMatchObject({ available: true, provider: "tdx_guest" });
    expect(f.liveEntries()).toEqual([]);
  });
});
