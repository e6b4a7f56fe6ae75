// The attested SSH host identity through the compiled binary: `unlock --test-only --measure` fetches
// the volume key and the host key + certificate in one attested session (one /auth, one /attest),
// installs them in tmpfs, measures the fingerprint into swtpm PCR 15; OpenSSH's own ssh-keygen reads
// what was installed. The KBS playing evil (refusing, wrong key type, certificate for another key)
// stops the unlock before the volume key is used.
import { execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { decodeRecords, replayExtends } from "../../agent/measure/events.ts";
import { EXIT_CODES } from "../../platform/util/errors.ts";
import { ensureBinary, runCli } from "../helpers/binary.ts";
import { startSwtpm, type Swtpm } from "../helpers/swtpm.ts";
import { toolsAvailable } from "../helpers/tools.ts";
import { startTestKbs, type RecordedRequest, type TestKbs } from "../kbs/server.ts";
import { cryptsetupAvailable, makeLuksImage, type LuksImage } from "../unit/unlock/luks-image.ts";

const FIX = path.join(import.meta.dirname, "../fixtures/ssh");
const fixture = (name: string) => fs.readFileSync(path.join(FIX, name));
const FINGERPRINT = "SHA256:8f8p8/kyS1JqtqI90Ik/UpJDGkcdefEzoHMHkRVxTBY";
const SHM = "/dev/shm";
const have =
  cryptsetupAvailable() &&
  toolsAvailable("swtpm", "tpm2_pcrread", "ssh-keygen") &&
  fs.existsSync(SHM) &&
  fs.statfsSync(SHM).type === 0x01021994;

let work: string;
let run: string;
let kbs: TestKbs;
let tpm: Swtpm;
let img: LuksImage;
const seen: RecordedRequest[] = [];

beforeAll(async () => {
  if (!have) return;
  ensureBinary();
  work = fs.mkdtempSync(path.join(os.tmpdir(), "ssh-identity-"));
  run = fs.mkdtempSync(path.join(SHM, "ssh-identity-run-"));
  img = makeLuksImage(work, "disk.img");
  kbs = await startTestKbs({
    resources: {
      "default/key/root": img.key,
      "default/ssh/host": fixture("host_ed25519"),
      "default/ssh/host-cert": fixture("host_ed25519-cert.pub"),
      "default/ssh/ecdsa": fixture("ecdsa_host"),
      "default/ssh/encrypted": fixture("encrypted_ed25519"),
      "default/ssh/other-cert": fixture("other_ed25519-cert.pub"),
      "default/ssh/truncated": fixture("host_ed25519").subarray(0, 200),
    },
    onRequest: (r) => seen.push(r),
    admin: { mode: "InsecureAllowAll" },
  });
  tpm = await startSwtpm({ ekCerts: false, pcrBanks: "sha256" });
});
afterAll(async () => {
  await kbs?.close();
  await tpm?.stop();
  for (const d of [work, run]) if (d) fs.rmSync(d, { recursive: true, force: true });
});

function config(
  name: string,
  ssh: Record<string, unknown>,
  unlockExtra: Record<string, unknown> = {},
): { file: string; dir: string; record: string } {
  const dir = path.join(run, name);
  const record = path.join(dir, "measurements.cbor");
  const file = path.join(work, `${name}.json`);
  fs.writeFileSync(
    file,
    JSON.stringify({
      platform: { tee: "sample", allow_sample: true, tpm: tpm.spec },
      kbs: { insecure_http: true, endpoints: [kbs.url], resource_attempts: 1 },
      unlock: {
        measure: { tpm: "required", record_path: record },
        volumes: [{ name: "root", uuid: img.uuid, device: img.file, resource: "default/key/root" }],
        ...unlockExtra,
      },
      identity: { ssh },
    }),
  );
  return { file, dir, record };
}

const unlock = (file: string) =>
  runCli(["unlock", "--test-only", "--measure", "--config", file, "--log-format", "text"], { timeoutMs: 60_000 });

function pcr15(): string {
  const out = path.join(work, "pcr.bin");
  execFileSync("tpm2_pcrread", ["sha256:15", "-o", out], { env: { ...process.env, TPM2TOOLS_TCTI: tpm.tcti } });
  return fs.readFileSync(out).toString("hex");
}

describe.skipIf(!have)("attested SSH host identity (binary, test KBS, swtpm)", () => {
  it("one attested session releases the disk key, host key and certificate; installed, readable by ssh-keygen, measured", async () => {
    const c = config("good", { resource: "default/ssh/host", certificate_resource: "default/ssh/host-cert" });
    seen.length = 0;
    const r = await unlock(c.file);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout.toString()).toMatch(/^root: key-verified/);
    // the identity first (a required one refused stops the run before any volume key), one handshake
    expect(seen.map((q) => q.path)).toEqual([
      "/kbs/v0/auth",
      "/kbs/v0/attest",
      "/kbs/v0/resource/default/ssh/host",
      "/kbs/v0/resource/default/ssh/host-cert",
      "/kbs/v0/resource/default/key/root",
    ]);
    const ssh = path.join(c.dir, "ssh");
    const key = path.join(ssh, "ssh_host_ed25519_key");
    // OpenSSH reads our re-encoded key and derives the same public key and fingerprint.
    expect(execFileSync("ssh-keygen", ["-y", "-f", key], { encoding: "utf8" })).toBe(
      fixture("host_ed25519.pub").toString(),
    );
    expect(execFileSync("ssh-keygen", ["-lf", `${key}.pub`], { encoding: "utf8" })).toContain(FINGERPRINT);
    expect(
      execFileSync("ssh-keygen", ["-Lf", path.join(ssh, "ssh_host_ed25519_key-cert.pub")], { encoding: "utf8" }),
    ).toMatch(/host certificate/);
    expect(fs.statSync(key).mode & 0o777).toBe(0o600);
    // The fingerprint event is in the record and the record replays to PCR 15.
    const recs = decodeRecords(fs.readFileSync(c.record));
    expect(recs.map((x) => [x.kind, x.event])).toEqual([
      ["ssh-identity", `cvm-unlock:ssh-host-key:${FINGERPRINT}`],
      ["volume", `cryptsetup:root:${img.uuid}`],
    ]);
    const sha = (b: Uint8Array) => new Uint8Array(createHash("sha256").update(b).digest());
    expect(Buffer.from(recs[0]!.pcr!.digests.sha256!)).toEqual(Buffer.from(sha(Buffer.from(recs[0]!.event))));
    // This is the first test to extend the fresh swtpm's PCR 15.
    const replayed = replayExtends(
      sha,
      new Uint8Array(32),
      recs.map((x) => new Uint8Array(x.pcr!.digests.sha256!)),
    );
    expect(pcr15()).toBe(Buffer.from(replayed).toString("hex"));
    expect(r.stderr).toContain(`SSH host key ${FINGERPRINT} installed`);
    expect(r.stderr).not.toContain(fixture("host_ed25519").toString().split("\n")[1]!);
  });

  for (const [name, ssh, problem] of [
    ["refused", { resource: "default/ssh/absent" }, /default\/ssh\/absent/],
    ["ecdsa", { resource: "default/ssh/ecdsa" }, /keytype.*ecdsa-sha2-nistp256/],
    ["encrypted", { resource: "default/ssh/encrypted" }, /ciphername.*passphrase/],
    ["truncated", { resource: "default/ssh/truncated" }, /OpenSSH private key/],
    [
      "other-cert",
      { resource: "default/ssh/host", certificate_resource: "default/ssh/other-cert" },
      /certifies another key/,
    ],
  ] as const) {
    it(`required identity, evil KBS (${name}): the unlock fails before the volume key is used`, async () => {
      const c = config(`evil-${name}`, ssh);
      const r = await unlock(c.file);
      expect(r.code).not.toBe(0);
      expect([EXIT_CODES["kbs-protocol"], EXIT_CODES["kbs-refused"], EXIT_CODES["resource-missing"]]).toContain(r.code);
      expect(r.stderr).toMatch(problem);
      expect(r.stdout.toString()).not.toMatch(/key-verified/);
      expect(r.stderr).not.toMatch(/extended PCR 15/);
      expect(fs.existsSync(path.join(c.dir, "ssh", "ssh_host_ed25519_key"))).toBe(false);
    });
  }

  it("optional identity the KBS refuses: the volume still unlocks, no key installed, 'none' measured", async () => {
    const c = config("optional", { resource: "default/ssh/absent", policy: "optional" });
    const r = await unlock(c.file);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout.toString()).toMatch(/^root: key-verified/);
    expect(r.stderr).toMatch(/SSH host identity not installed/);
    expect(fs.existsSync(path.join(c.dir, "ssh", "ssh_host_ed25519_key"))).toBe(false);
    const recs = decodeRecords(fs.readFileSync(c.record));
    expect(recs.map((x) => x.event)).toEqual(["cvm-unlock:ssh-host-key:none", `cryptsetup:root:${img.uuid}`]);
  });
});

describe.skipIf(!have)("attested SSH host identity: the host's attacks on the boot path", () => {
  it("required identity refused, passphrase fallback on: no console passphrase stands in for it, nothing opened", async () => {
    const log = path.join(work, "fallback-cryptsetup.log");
    const cryptsetup = path.join(work, "fallback-cryptsetup");
    fs.writeFileSync(cryptsetup, `#!/bin/sh\necho "cryptsetup $*" >> ${log}\nexit 0\n`, { mode: 0o755 });
    const c = config(
      "fallback",
      { resource: "default/ssh/absent" },
      {
        passphrase_fallback: true,
        cryptsetup,
        measure: { tpm: "off", rtmr_mode: "off", record_path: path.join(run, "fallback.cbor") },
      },
    );
    const r = await runCli(["unlock", "--config", c.file, "--log-format", "text"], {
      timeoutMs: 60_000,
      input: "recovery\n",
    });
    expect([EXIT_CODES["kbs-refused"], EXIT_CODES["resource-missing"]], r.stderr).toContain(r.code);
    expect(r.stderr).toMatch(/default\/ssh\/absent/);
    expect(r.stderr).not.toMatch(/asking on the console/);
    expect(fs.existsSync(log) ? fs.readFileSync(log, "utf8") : "").not.toMatch(/open/);
  });
});

describe.skipIf(!have)("cvm-unlock ssh-identity: the owner makes and stores the identity", () => {
  const make = (extra: string[]) =>
    runCli(
      ["ssh-identity", "--kbs", kbs.url, "--insecure-http", "--admin-anonymous", "--log-format", "text", ...extra],
      { timeoutMs: 60_000 },
    );

  it("generates a key in memory, has the CA sign it, uploads both; the VM installs exactly that key", async () => {
    // ssh-keygen refuses a private key file others can read, and git checks fixtures out 0644
    const caKey = path.join(fs.mkdtempSync(path.join(os.tmpdir(), "ssh-ca-")), "ca_ed25519");
    fs.copyFileSync(path.join(FIX, "ca_ed25519"), caKey);
    fs.chmodSync(caKey, 0o600);
    const r = await make([
      "--resource",
      "default/ssh/made",
      "--certificate-resource",
      "default/ssh/made-cert",
      "--ca-key",
      caKey,
      "--principal",
      "vm.example",
      "--validity",
      "+52w",
    ]);
    expect(r.code, r.stderr).toBe(0);
    const stored = Buffer.from(kbs.resources.get("default/ssh/made")!);
    const cert = Buffer.from(kbs.resources.get("default/ssh/made-cert")!);
    const out = r.stdout.toString();
    // Nothing of the private key in the output or the logs.
    for (const l of stored.toString().split("\n").slice(1, -2)) {
      expect(out).not.toContain(l);
      expect(r.stderr).not.toContain(l);
    }
    // OpenSSH reads the stored key; the printed known_hosts line and fingerprint are its public half.
    const keyFile = path.join(work, "made_key");
    fs.writeFileSync(keyFile, stored, { mode: 0o600 });
    const pub = execFileSync("ssh-keygen", ["-y", "-f", keyFile], { encoding: "utf8" }).trim();
    expect(out).toContain(`  vm.example ${pub.split(" ").slice(0, 2).join(" ")}\n`);
    const fp = execFileSync("ssh-keygen", ["-lf", keyFile], { encoding: "utf8" }).split(" ")[1]!;
    expect(out).toContain(`host key: ${fp} (ED25519)`);
    const caPub = fixture("ca_ed25519.pub").toString().split(" ").slice(0, 2).join(" ");
    expect(out).toContain(`@cert-authority vm.example ${caPub}\n`);
    fs.writeFileSync(`${keyFile}-cert.pub`, cert);
    expect(execFileSync("ssh-keygen", ["-Lf", `${keyFile}-cert.pub`], { encoding: "utf8" })).toMatch(
      /host certificate[\s\S]*Principals: \n\s+vm.example/,
    );
    expect(out).toContain(
      '"identity": {"ssh": {"resource":"default/ssh/made","certificate_resource":"default/ssh/made-cert","policy":"required"}}',
    );

    // Round trip: the VM receives exactly that identity.
    const c = config("made", { resource: "default/ssh/made", certificate_resource: "default/ssh/made-cert" });
    const u = await unlock(c.file);
    expect(u.code, u.stderr).toBe(0);
    expect(u.stderr).toContain(`SSH host key ${fp} installed`);
    expect(fs.readFileSync(path.join(c.dir, "ssh", "ssh_host_ed25519_key")).equals(stored)).toBe(true);
  });

  it("refuses a CA the VM could not verify (ecdsa) before uploading anything", async () => {
    const before = kbs.resources.size;
    const caDir = fs.mkdtempSync(path.join(work, "ecdsa-ca-"));
    execFileSync("ssh-keygen", ["-q", "-t", "ecdsa", "-N", "", "-f", path.join(caDir, "ca")]);
    const r = await make([
      "--resource",
      "default/ssh/x",
      "--certificate-resource",
      "default/ssh/x-cert",
      "--ca-key",
      path.join(caDir, "ca"),
    ]);
    expect(r.code).toBe(EXIT_CODES.usage);
    expect(r.stderr).toMatch(/the VM would refuse this certificate.*ecdsa/);
    expect(kbs.resources.size).toBe(before);
  });

  it("usage errors: no credentials, a certificate resource without a CA key", async () => {
    const none = await runCli(["ssh-identity", "--kbs", kbs.url, "--resource", "default/ssh/y"]);
    expect(none.code).toBe(EXIT_CODES.usage);
    const noCa = await make(["--resource", "default/ssh/y", "--certificate-resource", "default/ssh/y-cert"]);
    expect(noCa.code).toBe(EXIT_CODES.usage);
    expect(noCa.stderr).toMatch(/--certificate-resource and --ca-key go together/);
  });
});
