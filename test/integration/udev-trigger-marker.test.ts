// The boot unit starts the compiled agent before udev's coldplug and passes
// --udev-trigger-marker (dracut-module, cvm-unlock.service): until the drop-in on
// systemd-udev-trigger.service has written the marker, an absent /run/udev/queue means "nothing
// triggered yet", not "settled". The host decides when (and whether) the coldplug's events come:
// auto-detection must not probe before the marker (it decides by absence too), a marker that never
// comes ends at the run's deadline without a KBS request, and a forced tee whose device is already
// there does not wait for it. Stand-in /proc and /sys (--platform-root), real cryptsetup, --test-only.
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { EXIT_CODES } from "../../platform/util/errors.ts";
import { BINARY, ensureBinary, runCli, type RunResult } from "../helpers/binary.ts";
import { startTestKbs, type TestKbs } from "../kbs/server.ts";
import { cryptsetupAvailable, makeLuksImage, type LuksImage } from "../unit/unlock/luks-image.ts";

const have = cryptsetupAvailable();
let work: string;
let img: LuksImage;
let kbs: TestKbs | undefined;
let marker: string;

beforeAll(() => {
  if (!have) return;
  ensureBinary();
  work = fs.mkdtempSync(path.join(os.tmpdir(), "udev-marker-it-"));
  img = makeLuksImage(work, "disk.img");
});
afterEach(async () => {
  await kbs?.close();
  kbs = undefined;
  if (marker) fs.rmSync(marker, { force: true });
});
afterAll(() => {
  if (work) fs.rmSync(work, { recursive: true, force: true });
});

/** The initramfs before the coldplug: network up (lo), no udev queue file, no marker. */
function earlyBootRoot(): string {
  const root = fs.mkdtempSync(path.join(work, "root-"));
  const put = (rel: string, text: string) => {
    fs.mkdirSync(path.dirname(path.join(root, rel)), { recursive: true });
    fs.writeFileSync(path.join(root, rel), text);
  };
  put("proc/cmdline", "console=ttyS0\n");
  put("proc/net/route", "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n");
  put("proc/net/ipv6_route", "");
  put("sys/class/net/lo/flags", "0x9\n");
  marker = path.join(root, "run/cvm-unlock.udev-triggered");
  return root;
}

async function unlockEarly(platform: object, deadline: number, markerAfterMs?: number): Promise<RunResult> {
  const root = earlyBootRoot();
  kbs = await startTestKbs({ resources: { "default/key/root": img.key } });
  const cfg = path.join(root, "config.json");
  fs.writeFileSync(
    cfg,
    JSON.stringify({
      platform,
      kbs: { insecure_http: true, endpoints: [kbs.url] },
      deadline_s: deadline,
      unlock: { volumes: [{ name: "root", uuid: img.uuid, device: img.file, resource: "default/key/root" }] },
    }),
  );
  if (markerAfterMs !== undefined)
    setTimeout(
      () => (fs.mkdirSync(path.dirname(marker), { recursive: true }), fs.writeFileSync(marker, "")),
      markerAfterMs,
    );
  return runCli(
    [
      "unlock",
      "--test-only",
      "--config",
      cfg,
      "--platform-root",
      root,
      "--udev-trigger-marker",
      marker,
      "--verbose",
      "--log-format",
      "text",
    ],
    { timeoutMs: 60_000 },
  );
}

const auto = { tee: "auto", allow_sample: true };
const absentTpm = { tee: "tpm", tpm: "/dev/tpmrm0" };

describe.skipIf(!have)("unlock started before udev's coldplug (--udev-trigger-marker)", () => {
  it("the coldplug is never triggered: auto-detection does not probe, the deadline ends it, no KBS request", async () => {
    const t0 = Date.now();
    const r = await unlockEarly(auto, 3);
    expect(r.timedOut).toBe(false);
    expect(r.code, r.stderr).toBe(EXIT_CODES.deadline);
    expect(r.stderr).toMatch(/deadline of 3s exceeded while waiting for udev to process the device events/);
    expect(r.stderr).not.toMatch(/no evidence source/);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(2500);
    expect(kbs!.stats.events).toEqual([]);
  });

  // Once the marker is there (and no queue file), detection runs: in the stand-in root nothing but
  // the never auto-selected sample is present, so it fails as a platform error, not at the deadline.
  it.each([
    ["auto-detection", auto, /no evidence source found/],
    ["a forced tee whose device is not there yet", absentTpm, /tee tpm is not available/],
  ])("%s waits for the marker, then detects (no KBS request)", async (_what, platform, error) => {
    const t0 = Date.now();
    const r = await unlockEarly(platform, 30, 2000);
    expect(r.timedOut).toBe(false);
    expect(r.code, r.stderr).toBe(EXIT_CODES.platform);
    expect(r.stderr).toMatch(error);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(2000);
    expect(Date.now() - t0).toBeLessThan(20_000);
    expect(kbs!.stats.events).toEqual([]);
  });

  it("a forced tee whose device is there does not wait for the coldplug: the key opens the volume", async () => {
    const r = await unlockEarly({ tee: "sample", allow_sample: true }, 10);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).not.toMatch(/waiting for udev|coldplug/);
    expect(kbs!.stats.released).toBe(1);
  });
});
