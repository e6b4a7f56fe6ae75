// PCR 15 measurement against a real TPM (swtpm): unlock --test-only --measure extends the volume
// identity, `measure leave-initrd` the marker; tpm2_pcrread (an independent client) must read
// exactly what the event record replays to, in every active bank.
import { execFileSync, spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { decodeRecords, replayExtends } from "../../agent/measure/events.ts";
import { ensureBinary, runCli } from "../helpers/binary.ts";
import { startSwtpm, type Swtpm } from "../helpers/swtpm.ts";
import { startTestKbs, type TestKbs } from "../kbs/server.ts";
import { toolsAvailable } from "../helpers/tools.ts";
import { cryptsetupAvailable, makeLuksImage, type LuksImage } from "../unit/unlock/luks-image.ts";

// swtpm_setup --version exits 1 on Debian 12 (swtpm 0.7.1), so check the binaries by running swtpm only.
const have = cryptsetupAvailable() && toolsAvailable("swtpm", "swtpm_setup", "tpm2_pcrread");
let work: string;
let kbs: TestKbs;
let tpm: Swtpm;
let img: LuksImage;

beforeAll(async () => {
  if (!have) return;
  ensureBinary();
  work = fs.mkdtempSync(path.join(os.tmpdir(), "unlock-measure-"));
  img = makeLuksImage(work, "disk.img");
  kbs = await startTestKbs({ resources: { "default/key/root": img.key } });
  tpm = await startSwtpm({ ekCerts: false, pcrBanks: "sha256,sha384" });
});
afterAll(async () => {
  await kbs?.close();
  await tpm?.stop();
  if (work) fs.rmSync(work, { recursive: true, force: true });
});

function pcr15(bank: string): string {
  const out = execFileSync("tpm2_pcrread", [`${bank}:15`, "-o", path.join(work, `pcr-${bank}.bin`)], {
    env: { ...process.env, TPM2TOOLS_TCTI: tpm.tcti },
    encoding: "utf8",
  });
  expect(out).toMatch(/15/);
  return fs.readFileSync(path.join(work, `pcr-${bank}.bin`)).toString("hex");
}

describe.skipIf(!have)("measurement into swtpm PCR 15", () => {
  it("volume identity then leave-initrd; the event record replays to the PCR values", async () => {
    const record = path.join(work, "run/cvm-unlock/measurements.cbor");
    const cfg = path.join(work, "config.json");
    fs.writeFileSync(
      cfg,
      JSON.stringify({
        platform: { tee: "sample", allow_sample: true, tpm: tpm.spec },
        kbs: { insecure_http: true, endpoints: [kbs.url] },
        unlock: {
          measure: { tpm: "required", record_path: record },
          volumes: [{ name: "root", uuid: img.uuid, device: img.file, resource: "default/key/root" }],
        },
      }),
    );
    expect(pcr15("sha256")).toBe("00".repeat(32));

    const u = await runCli(["unlock", "--test-only", "--measure", "--config", cfg, "--log-format", "text"]);
    expect(u.code, u.stderr).toBe(0);
    expect(u.stderr).toMatch(/extended PCR 15 \(sha256, sha384\) with "cryptsetup:root:/);
    const l = await runCli(["measure", "leave-initrd", "--config", cfg, "--log-format", "text"]);
    expect(l.code, l.stderr).toBe(0);
    expect(l.stdout.toString()).toMatch(/^leave-initrd: PCR 15/);

    const recs = decodeRecords(fs.readFileSync(record));
    expect(recs.map((r) => [r.kind, r.event])).toEqual([
      ["volume", `cryptsetup:root:${img.uuid}`],
      ["leave-initrd", "cvm-unlock:leave-initrd"],
    ]);
    for (const [bank, size] of [
      ["sha256", 32],
      ["sha384", 48],
    ] as const) {
      const hash = (b: Uint8Array) => new Uint8Array(createHash(bank).update(b).digest());
      // The record's digests are what the documented event strings hash to ...
      expect(Buffer.from(recs[0]!.pcr!.digests[bank]!).toString("hex")).toBe(
        createHash(bank).update(`cryptsetup:root:${img.uuid}`).digest("hex"),
      );
      // ... and replaying them gives the TPM's value.
      const replayed = replayExtends(
        hash,
        new Uint8Array(size),
        recs.map((r) => new Uint8Array(r.pcr!.digests[bank]!)),
      );
      expect(pcr15(bank)).toBe(Buffer.from(replayed).toString("hex"));
    }

    // A required TPM that is not there: the unlock fails (fail closed), naming it.
    const noTpm = path.join(work, "config-notpm.json");
    fs.writeFileSync(noTpm, fs.readFileSync(cfg, "utf8").replace(tpm.spec, "/dev/tpmrm-absent"));
    const f = await runCli(["measure", "leave-initrd", "--config", noTpm]);
    expect(f.code).toBe(4);
    expect(f.stderr).toMatch(/no TPM at \/dev\/tpmrm-absent/);
  });

  it("a tampered opened.json does not stop the leave-initrd marker: extended, outcome unknown, warning names it", async () => {
    const run = path.join(work, "run-tampered");
    fs.mkdirSync(run, { recursive: true });
    fs.writeFileSync(path.join(run, "opened.json"), JSON.stringify({ version: 1, volumes: [{ name: "root" }] }));
    const cfg = path.join(work, "config-tampered.json");
    fs.writeFileSync(
      cfg,
      JSON.stringify({
        platform: { tpm: tpm.spec },
        unlock: { measure: { tpm: "required", record_path: path.join(run, "measurements.cbor") } },
      }),
    );
    const before = Buffer.from(pcr15("sha256"), "hex");
    const l = await runCli(["measure", "leave-initrd", "--config", cfg, "--log-format", "text"]);
    expect(l.code, l.stderr).toBe(0);
    expect(l.stdout.toString()).toMatch(/^leave-initrd: PCR 15 \(unknown\)/);
    expect(l.stderr).toMatch(/'volumes\[0\]\.uuid' is not a lower-case LUKS UUID; extending the leave-initrd marker/);
    const event = createHash("sha256").update("cvm-unlock:leave-initrd").digest();
    expect(pcr15("sha256")).toBe(
      createHash("sha256")
        .update(Buffer.concat([before, event]))
        .digest("hex"),
    );
    const recs = decodeRecords(fs.readFileSync(path.join(run, "measurements.cbor")));
    expect(recs.map((r) => [r.kind, r.outcome])).toEqual([["leave-initrd", "unknown"]]);
  });
});
