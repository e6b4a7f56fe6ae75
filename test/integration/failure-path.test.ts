// The failure path of the initrd boot, played by the host (docs/SECURITY.md "Failure path"):
//  * a kernel command line with a shell door (rd.break, init=, ...) makes the agent refuse before
//    any KBS request (exit 16), for `fetch` and `unlock` alike;
//  * a failed unlock inside the initrd extends "cvm-unlock:failed:<code>" into the TPM (swtpm,
//    read back with tpm2_pcrread), and `measure failure` (the backstop unit) then prints the one
//    console line without extending twice; without a report it measures ":unknown" itself.
import { execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { decodeRecords } from "../../agent/measure/events.ts";
import { EXIT_CODES } from "../../platform/util/errors.ts";
import { ensureBinary, runCli } from "../helpers/binary.ts";
import { startSwtpm, type Swtpm } from "../helpers/swtpm.ts";
import { toolsAvailable } from "../helpers/tools.ts";
import { startTestKbs, type TestKbs } from "../kbs/server.ts";
import { cryptsetupAvailable, makeLuksImage, type LuksImage } from "../unit/unlock/luks-image.ts";

const RESOURCE = "default/key/root";
let work: string;
let kbs: TestKbs;
let img: LuksImage;

beforeAll(async () => {
  ensureBinary();
  work = fs.mkdtempSync(path.join(os.tmpdir(), "failure-path-"));
  img = makeLuksImage(work, "disk.img");
  kbs = await startTestKbs({ resources: { [RESOURCE]: img.key } });
});
afterAll(async () => {
  await kbs?.close();
  if (work) fs.rmSync(work, { recursive: true, force: true });
});

/** A stand-in root: proc/cmdline, and etc/initrd-release when we are "in the initrd". */
function platformRoot(name: string, cmdline: string, initrd: boolean): string {
  const root = path.join(work, name);
  fs.mkdirSync(path.join(root, "proc"), { recursive: true });
  fs.mkdirSync(path.join(root, "etc"), { recursive: true });
  fs.writeFileSync(path.join(root, "proc/cmdline"), cmdline + "\n");
  if (initrd) fs.writeFileSync(path.join(root, "etc/initrd-release"), 'NAME="dracut"\n');
  return root;
}

function config(name: string, extra: { tpm?: string; record?: string } = {}): string {
  const p = path.join(work, `${name}.json`);
  fs.writeFileSync(
    p,
    JSON.stringify({
      platform: { tee: "sample", allow_sample: true, ...(extra.tpm ? { tpm: extra.tpm } : {}) },
      kbs: { insecure_http: true, endpoints: [kbs.url], attempts_per_endpoint: 1, resource_attempts: 1 },
      resource: RESOURCE,
      unlock: {
        measure: {
          tpm: extra.tpm ? "required" : "off",
          rtmr_mode: "off",
          record_path: extra.record ?? path.join(work, name, "run/measurements.cbor"),
        },
        volumes: [{ name: "root", uuid: img.uuid, device: img.file }],
      },
    }),
  );
  return p;
}

describe("a shell door on the kernel command line: no KBS contact", () => {
  beforeEach(() => {
    kbs.setPolicy("allow");
    kbs.resetStats();
  });

  it.each([
    ["rd.break", "console=ttyS0 rd.break"],
    ["rd.break=pre-mount", "rd.break=pre-mount quiet"],
    ["init=/bin/sh", "init=/bin/sh"],
    ["rd.systemd.unit=emergency.target", "rd.systemd.unit=emergency.target"],
    ["systemd.debug_shell", "systemd.debug_shell"],
    ["rd.shell=1", "rd.shell=1"],
    ["rd.emergency=reboot", "rd.emergency=reboot"],
  ])("fetch refuses with %s (exit 16, zero KBS requests)", async (param, cmdline) => {
    const root = platformRoot(`fetch-${param}`, cmdline, true);
    const r = await runCli(["fetch", RESOURCE, "--config", config("fetch"), "--platform-root", root]);
    expect(r.code, r.stderr).toBe(EXIT_CODES["unsafe-cmdline"]);
    expect(r.stderr).toContain(param);
    expect(r.stderr).toMatch(/opens a shell to the host.*refusing to contact the KBS/);
    expect(r.stdout.length).toBe(0);
    expect(kbs.stats.requests).toEqual({ auth: 0, attest: 0, resource: 0, other: 0 });
  });

  it("unlock refuses too, and the same boot without the parameter gets the key", async () => {
    const cfg = config("unlock");
    const bad = platformRoot("unlock-rdbreak", "console=ttyS0 rd.luks=0 rd.break", false);
    const r = await runCli(["unlock", "--test-only", "--config", cfg, "--platform-root", bad]);
    expect(r.code, r.stderr).toBe(16);
    expect(r.stderr).toMatch(/rd\.break \(dracut stops in a shell/);
    expect(kbs.stats.requests).toEqual({ auth: 0, attest: 0, resource: 0, other: 0 });

    const good = platformRoot("unlock-clean", "console=ttyS0 rd.luks=0 rd.shell=0 rd.emergency=poweroff", false);
    const ok = await runCli(["unlock", "--test-only", "--config", cfg, "--platform-root", good]);
    expect(ok.code, ok.stderr).toBe(0);
    expect(kbs.stats.released).toBe(1);
  });
});

const haveTpm = cryptsetupAvailable() && toolsAvailable("swtpm", "swtpm_setup", "tpm2_pcrread");

describe.skipIf(!haveTpm)("the failure marker in a real TPM (swtpm)", () => {
  let tpm: Swtpm;
  beforeAll(async () => {
    tpm = await startSwtpm({ ekCerts: false, pcrBanks: "sha256" });
  });
  afterAll(async () => {
    await tpm?.stop();
  });

  const pcr15 = () => {
    const out = path.join(work, "pcr.bin");
    execFileSync("tpm2_pcrread", ["sha256:15", "-o", out], { env: { ...process.env, TPM2TOOLS_TCTI: tpm.tcti } });
    return fs.readFileSync(out).toString("hex");
  };
  const sha256 = (b: Uint8Array | string) => createHash("sha256").update(b).digest();
  const extended = (from: string, event: string) =>
    sha256(Buffer.concat([Buffer.from(from, "hex"), sha256(event)])).toString("hex");

  it("a refused unlock in the initrd extends cvm-unlock:failed:8 before exiting; the backstop only reports it", async () => {
    kbs.setPolicy("deny");
    const record = path.join(work, "tpm/run/cvm-unlock/measurements.cbor");
    const cfg = config("tpm", { tpm: tpm.spec, record });
    const root = platformRoot("tpm-initrd", "console=ttyS0 rd.luks=0", true);
    const before = pcr15();

    const u = await runCli(["unlock", "--config", cfg, "--platform-root", root, "--log-format", "text"]);
    expect(u.code, u.stderr).toBe(EXIT_CODES["kbs-refused"]);
    const afterFailure = pcr15();
    expect(afterFailure).toBe(extended(before, "cvm-unlock:failed:8"));
    expect(decodeRecords(fs.readFileSync(record)).map((r) => [r.kind, r.event, r.outcome])).toEqual([
      ["failure", "cvm-unlock:failed:8", "kbs-refused"],
    ]);
    const report = JSON.parse(fs.readFileSync(path.join(path.dirname(record), "failed.json"), "utf8"));
    expect(report).toMatchObject({ v: 1, command: "unlock", exit_code: 8, kind: "kbs-refused", marker: "measured" });

    const b = await runCli(["measure", "failure", "--action", "poweroff", "--config", cfg, "--platform-root", root]);
    expect(b.code, b.stderr).toBe(0);
    const lines = b.stdout.toString().split("\n").filter(Boolean);
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(
      /^cvm-unlock: unlock failed with exit 8 \(kbs-refused\): .*; failure marker measured into PCR 15; powering off$/,
    );
    expect(pcr15()).toBe(afterFailure); // not extended twice

    // The backstop alone (the agent was killed, or the failure was not ours): it measures ":unknown".
    fs.rmSync(path.join(path.dirname(record), "failed.json"));
    const k = await runCli(["measure", "failure", "--action", "emergency", "--config", cfg, "--platform-root", root]);
    expect(k.code, k.stderr).toBe(0);
    expect(k.stdout.toString()).toMatch(
      /^cvm-unlock: initrd failure without a report from the agent \(exit code unknown\); failure marker measured into PCR 15; entering emergency mode\n$/,
    );
    expect(pcr15()).toBe(extended(afterFailure, "cvm-unlock:failed:unknown"));
  });

  it("outside the initrd (no etc/initrd-release) a failed unlock leaves the PCR alone", async () => {
    kbs.setPolicy("deny");
    const cfg = config("tpm-host", { tpm: tpm.spec });
    const root = platformRoot("tpm-host", "console=ttyS0", false);
    const before = pcr15();
    const u = await runCli(["unlock", "--config", cfg, "--platform-root", root]);
    expect(u.code, u.stderr).toBe(8);
    expect(pcr15()).toBe(before);
    expect(fs.existsSync(path.join(work, "tpm-host/run/failed.json"))).toBe(false);
  });
});
