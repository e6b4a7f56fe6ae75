// configfs-tsm entries removed under the agent (another process, or the kernel module going away):
// a typed error naming configfs-tsm, bounded in time, and no entry left behind.
import * as fs from "node:fs";
import * as path from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { requestTsmReport } from "../../../platform/tsm/report.ts";
import { Deadline } from "../../../platform/util/deadline.ts";
import { CvmError } from "../../../platform/util/errors.ts";
import { silentLogger } from "../../../platform/util/log.ts";
import { FakeTsm, fakePaths } from "../../helpers/fake-tsm.ts";

const fakes: FakeTsm[] = [];
afterEach(async () => {
  for (const f of fakes.splice(0)) await f.stop();
});

const inblob = new Uint8Array(64).map((_, i) => i);

/** A stand-in kernel whose entries are removed (rm -r by another process) right after each report. */
function startRemoving(): FakeTsm {
  const f: FakeTsm = FakeTsm.start({
    provider: "tdx_guest",
    outblobFor: (b) => Buffer.concat([Buffer.from("q"), b]),
    afterGenerate: ({ entry }) =>
      fs.rmSync(path.resolve(fakePaths(f).tsmReport, entry), { recursive: true, force: true }),
  });
  fakes.push(f);
  return f;
}

const env = (f: FakeTsm) => ({
  paths: fakePaths(f),
  tpm: { spec: "/dev/tpmrm0", akHandle: 0x81010002 },
  azure: { metadataUrl: "http://169.254.169.254", legacyTeeNames: false },
  deadline: new Deadline(10_000),
  log: silentLogger,
});

describe("configfs-tsm entry removal", () => {
  it("entry removed after the kernel generated the report: platform error (exit 4), nothing left behind", async () => {
    const f = startRemoving();
    const t0 = Date.now();
    const e = await requestTsmReport(env(f), { inblob }).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(CvmError);
    expect((e as CvmError).message).toMatch(/configfs-tsm/);
    expect((e as CvmError).kind).toBe("platform");
    expect(Date.now() - t0).toBeLessThan(6_000);
    expect(f.liveEntries()).toEqual([]);
  });
});
