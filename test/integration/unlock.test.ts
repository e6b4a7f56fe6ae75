// `cvm-unlock unlock --test-only` / `bind` / `config --explain` (the compiled binary) against the
// trustee-faithful test KBS over HTTPS, with LUKS2 images made by Debian's cryptsetup on plain files.
import * as crypto from "node:crypto";
import { execFileSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { luks2DigestFingerprint } from "../../agent/unlock/key-document.ts";
import { readLuks2Header } from "../../platform/luks/volume-io.ts";
import { caFingerprint } from "../../agent/config/layers/token.ts";
import { EXIT_CODES } from "../../platform/util/errors.ts";
import { ensureBinary, runCli, type RunResult } from "../helpers/binary.ts";
import { createPki, type Pki } from "../helpers/pki.ts";
import { startTestKbs, type TestKbs } from "../kbs/server.ts";
import {
  CRYPTSETUP,
  cryptsetupAvailable,
  makeLuksImage,
  tokenExport,
  type LuksImage,
} from "../unit/unlock/luks-image.ts";

const have = cryptsetupAvailable();
let work: string;
let pki: Pki;
let kbs: TestKbs;
let A: LuksImage;
let B: LuksImage;

const doc = (key: Buffer, pins?: Record<string, string>) =>
  JSON.stringify({ cvm_unlock_key: 1, key: key.toString("base64"), ...(pins ? { pins } : {}) });

beforeAll(async () => {
  if (!have) return;
  ensureBinary();
  work = fs.mkdtempSync(path.join(os.tmpdir(), "unlock-it-"));
  pki = createPki({ dir: path.join(work, "pki") });
  A = makeLuksImage(work, "a.img");
  B = makeLuksImage(work, "b.img");
  const fpA = luks2DigestFingerprint(readLuks2Header(A.file));
  kbs = await startTestKbs({
    tls: pki.tls,
    resources: {
      "default/key/a": A.key,
      "default/key/b": B.key,
      "default/key/a-pinned": doc(A.key, { uuid: A.uuid, luks2_digest_sha256: fpA }),
      "default/key/a-uuid-pin-only": doc(A.key, { uuid: A.uuid }),
      "default/key/a-digest-pin-only": doc(A.key, { luks2_digest_sha256: fpA }),
      "default/key/b-as-a": doc(B.key, { uuid: A.uuid }),
    },
  });
});
afterAll(async () => {
  await kbs?.close();
  if (work) fs.rmSync(work, { recursive: true, force: true });
});

function config(o: Record<string, unknown> = {}): string {
  const file = path.join(work, `config-${crypto.randomBytes(4).toString("hex")}.json`);
  const { kbs: k, unlock, ...rest } = o as { kbs?: object; unlock?: object };
  fs.writeFileSync(
    file,
    JSON.stringify({
      kbs: { ca_file: pki.caFile, request_timeout_s: 10, ...k },
      platform: { tee: "sample", allow_sample: true },
      unlock: { device_timeout_s: 2, ...unlock },
      ...rest,
    }),
  );
  return file;
}

function unlock(cfg: string, extra: string[]): Promise<RunResult> {
  return runCli(["unlock", "--test-only", "--config", cfg, "--log-format", "text", ...extra], { timeoutMs: 60_000 });
}

function noSecretIn(r: RunResult): void {
  for (const k of [A.key, B.key]) {
    for (const form of [k.toString("hex"), k.toString("base64"), k.toString("latin1")]) {
      expect(r.stderr.includes(form)).toBe(false);
      expect(r.stdout.includes(Buffer.from(form))).toBe(false);
    }
  }
}

describe.skipIf(!have)("unlock --test-only (binary, HTTPS test KBS, cryptsetup on image files)", () => {
  it("opens with the raw key from the KBS", async () => {
    const r = await unlock(config({ kbs: { endpoints: [kbs.url] } }), [
      "--device",
      A.file,
      "--resource",
      "default/key/a",
    ]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout.toString()).toContain(`root: key-verified (${A.file}, LUKS UUID ${A.uuid}, key from ${kbs.url})`);
    noSecretIn(r);
  });

  it("opens with a key document whose uuid and digest pins match; config uuid matches too", async () => {
    const cfg = config({
      kbs: { endpoints: [kbs.url] },
      unlock: {
        require_pins: true,
        volumes: [{ name: "data", uuid: A.uuid.toUpperCase(), device: A.file, resource: "default/key/a-pinned" }],
      },
    });
    const r = await unlock(cfg, []);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout.toString()).toMatch(/^data: key-verified/);
    noSecretIn(r);
  });

  it("wrong key: exit 14 with a clear message", async () => {
    const r = await unlock(config({ kbs: { endpoints: [kbs.url] } }), [
      "--device",
      A.file,
      "--resource",
      "default/key/b",
    ]);
    expect(r.code).toBe(EXIT_CODES["wrong-key"]);
    expect(r.stderr).toMatch(/the key from the KBS does not open .*a\.img \(cryptsetup exit 2/);
    expect(r.stdout.length).toBe(0);
    noSecretIn(r);
  });

  it("swapped volume (UUID differs from the trusted config): refused before any KBS request", async () => {
    kbs.resetStats();
    const cfg = config({
      kbs: { endpoints: [kbs.url] },
      unlock: { volumes: [{ name: "root", uuid: A.uuid, device: B.file }] },
    });
    const r = await unlock(cfg, ["--resource", "default/key/a"]);
    expect(r.code).toBe(EXIT_CODES.volume);
    expect(r.stderr).toContain(
      `has LUKS UUID ${B.uuid}, but volume root must be ${A.uuid}: refusing (swapped volume?)`,
    );
    expect(kbs.stats.requests.auth + kbs.stats.requests.attest + kbs.stats.requests.resource).toBe(0);
  });

  it("pins from the KBS refuse a swapped container even when the key would open it", async () => {
    // The host swapped in B and the KBS resource for A's slot now carries B's key: the UUID pin catches it.
    const r = await unlock(config({ kbs: { endpoints: [kbs.url] } }), [
      "--device",
      B.file,
      "--resource",
      "default/key/b-as-a",
    ]);
    expect(r.code).toBe(EXIT_CODES.volume);
    expect(r.stderr).toContain(`has LUKS UUID ${B.uuid} but the KBS key is pinned to ${A.uuid}`);
    // Same UUID, different volume key (re-formatted container with A's UUID): the digest pin catches it.
    const clone = makeLuksImage(work, "a-clone.img", A.uuid);
    const r2 = await unlock(config({ kbs: { endpoints: [kbs.url] } }), [
      "--device",
      clone.file,
      "--resource",
      "default/key/a-digest-pin-only",
    ]);
    expect(r2.code).toBe(EXIT_CODES.volume);
    expect(r2.stderr).toMatch(/volume-key digest fingerprint [0-9a-f]{64} does not match the pin/);
    const r3 = await unlock(config({ kbs: { endpoints: [kbs.url] } }), [
      "--device",
      clone.file,
      "--resource",
      "default/key/a-uuid-pin-only",
    ]);
    expect(r3.code).toBe(EXIT_CODES["wrong-key"]); // the uuid pin alone passes; cryptsetup then rejects A's key
  });

  it("require_pins refuses a raw key", async () => {
    const r = await unlock(config({ kbs: { endpoints: [kbs.url] }, unlock: { require_pins: true } }), [
      "--device",
      A.file,
      "--resource",
      "default/key/a",
    ]);
    expect(r.code).toBe(EXIT_CODES.volume);
    expect(r.stderr).toMatch(/carries no volume pins, but unlock.require_pins is set/);
  });

  it("KBS policy deny: exit 8 (kbs-refused)", async () => {
    kbs.setPolicy("deny");
    try {
      const r = await unlock(config({ kbs: { endpoints: [kbs.url], resource_attempts: 1 } }), [
        "--device",
        A.file,
        "--resource",
        "default/key/a",
      ]);
      expect(r.code).toBe(EXIT_CODES["kbs-refused"]);
      expect(r.stderr).toMatch(/polic/i);
    } finally {
      kbs.setPolicy("allow");
    }
  });

  it("missing device: waits at most device_timeout_s, then exit 15", async () => {
    const r = await unlock(config({ kbs: { endpoints: [kbs.url] }, unlock: { device_timeout_s: 1 } }), [
      "--device",
      path.join(work, "absent.img"),
      "--resource",
      "default/key/a",
    ]);
    expect(r.code).toBe(EXIT_CODES.volume);
    expect(r.stderr).toMatch(/did not appear within 1s/);
    expect(r.durationMs).toBeLessThan(5_000);
  });

  it("a file that is not LUKS2: exit 15", async () => {
    const f = path.join(work, "plain.img");
    fs.writeFileSync(f, Buffer.alloc(65536));
    const r = await unlock(config({ kbs: { endpoints: [kbs.url] } }), ["--device", f, "--resource", "default/key/a"]);
    expect(r.code).toBe(EXIT_CODES.volume);
    expect(r.stderr).toMatch(/is not a LUKS2 volume/);
  });

  it("kernel cmdline: ignored unless trusted; when trusted, strict and guarded", async () => {
    const root = path.join(work, "root-cmdline");
    fs.mkdirSync(path.join(root, "proc"), { recursive: true });
    fs.writeFileSync(
      path.join(root, "proc/cmdline"),
      `quiet rd.cvm_unlock.resource=default/key/a rd.cvm_unlock.kbs=${kbs.url}\n`,
    );
    const untrusted = await unlock(config({}), ["--device", A.file, "--platform-root", root]);
    expect(untrusted.code).toBe(EXIT_CODES.config);
    expect(untrusted.stderr).toMatch(/ignoring rd.cvm_unlock.\* .*trust_cmdline is not set/);
    const trusted = await unlock(config({ unlock: { trust_cmdline: true } }), [
      "--device",
      A.file,
      "--platform-root",
      root,
    ]);
    expect(trusted.code, trusted.stderr).toBe(0);
    fs.writeFileSync(path.join(root, "proc/cmdline"), "rd.cvm_unlock.insecure_http=1\n");
    const hostile = await unlock(config({ unlock: { trust_cmdline: true } }), [
      "--device",
      A.file,
      "--platform-root",
      root,
    ]);
    expect(hostile.code).toBe(EXIT_CODES.config);
    expect(hostile.stderr).toMatch(/unknown kernel parameter rd.cvm_unlock.insecure_http/);
  });
});

describe.skipIf(!have)("unlock (real open path) when the dm name already exists", () => {
  function dmRoot(name: string, dmUuid: string): string {
    const root = fs.mkdtempSync(path.join(work, "dmroot-"));
    const d = path.join(root, "sys/devices/virtual/block/dm-0");
    fs.mkdirSync(path.join(d, "dm"), { recursive: true });
    fs.writeFileSync(path.join(d, "uevent"), "DEVNAME=dm-0\nDEVTYPE=disk\n");
    fs.writeFileSync(path.join(d, "dm/name"), name + "\n");
    fs.writeFileSync(path.join(d, "dm/uuid"), dmUuid + "\n");
    fs.mkdirSync(path.join(root, "sys/class/block"), { recursive: true });
    fs.symlinkSync("../../devices/virtual/block/dm-0", path.join(root, "sys/class/block/dm-0"));
    return root;
  }

  it("same LUKS UUID: exit 0 without contacting the KBS; another volume under that name: exit 15", async () => {
    const run = path.join(work, "run-already");
    const cfg = config({
      kbs: { endpoints: [kbs.url] },
      unlock: { measure: { record_path: path.join(run, "measurements.cbor") } },
    });
    kbs.resetStats();
    const same = dmRoot("root", `CRYPT-LUKS2-${A.uuid.replace(/-/g, "")}-root`);
    const r = await runCli([
      "unlock",
      "--config",
      cfg,
      "--device",
      A.file,
      "--resource",
      "default/key/a",
      "--platform-root",
      same,
      "--log-format",
      "text",
    ]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout.toString()).toMatch(/^root: already-open/);
    expect(kbs.stats.requests.auth).toBe(0);
    expect(JSON.parse(fs.readFileSync(path.join(run, "opened.json"), "utf8"))).toEqual({
      version: 1,
      volumes: [{ name: "root", uuid: A.uuid, device: A.file }],
    });
    const other = dmRoot("root", `CRYPT-LUKS2-${B.uuid.replace(/-/g, "")}-root`);
    const r2 = await runCli([
      "unlock",
      "--config",
      cfg,
      "--device",
      A.file,
      "--resource",
      "default/key/a",
      "--platform-root",
      other,
    ]);
    expect(r2.code).toBe(EXIT_CODES.volume);
    expect(r2.stderr).toMatch(/a device-mapper device named root already exists .* and is not LUKS volume/);
    expect(kbs.stats.requests.auth).toBe(0);
  });
});

describe.skipIf(!have)("verify-root (binary, stand-in /proc and /sys)", () => {
  it("accepts the mapping unlock recorded, refuses plaintext and foreign roots", async () => {
    const run = path.join(work, "run-verify");
    fs.mkdirSync(run, { recursive: true });
    fs.writeFileSync(
      path.join(run, "opened.json"),
      JSON.stringify({ version: 1, volumes: [{ name: "root", uuid: A.uuid, device: A.file }] }),
    );
    const cfg = config({ unlock: { measure: { record_path: path.join(run, "measurements.cbor") } } });
    const root = fs.mkdtempSync(path.join(work, "vroot-"));
    fs.mkdirSync(path.join(root, "proc/self"), { recursive: true });
    const dm = (devno: string, name: string, uuid: string) => {
      fs.mkdirSync(path.join(root, "sys/dev/block", devno, "dm"), { recursive: true });
      fs.writeFileSync(path.join(root, "sys/dev/block", devno, "dm/name"), name);
      fs.writeFileSync(path.join(root, "sys/dev/block", devno, "dm/uuid"), uuid);
    };
    dm("253:0", "root", `CRYPT-LUKS2-${A.uuid.replace(/-/g, "")}-root`);
    dm("253:1", "root", `CRYPT-LUKS2-${B.uuid.replace(/-/g, "")}-root`);
    const mount = (devno: string) =>
      fs.writeFileSync(
        path.join(root, "proc/self/mountinfo"),
        `1 0 8:1 / / rw - ext4 /dev/vda1 rw\n40 1 ${devno} / /sysroot ro - ext4 /dev/x ro\n`,
      );
    const verify = () => runCli(["verify-root", "--config", cfg, "--platform-root", root]);
    mount("253:0");
    const ok = await verify();
    expect(ok.code, ok.stderr).toBe(0);
    expect(ok.stdout.toString()).toMatch(/^\/sysroot: on dm-crypt root \(CRYPT-LUKS2-/);
    mount("253:1");
    expect((await verify()).code).toBe(EXIT_CODES.volume);
    mount("254:2");
    const plain = await verify();
    expect(plain.code).toBe(EXIT_CODES.volume);
    expect(plain.stderr).toMatch(/refusing a plaintext root/);
    // A state file the host tampered with is a refusal, not "nothing was opened" (which would
    // let the configured volumes alone decide).
    fs.writeFileSync(path.join(run, "opened.json"), JSON.stringify({ version: 1, volumes: [{ name: "root" }] }));
    mount("253:0");
    const tampered = await verify();
    expect(tampered.code).toBe(EXIT_CODES.volume);
    expect(tampered.stderr).toMatch(/opened\.json: 'volumes\[0\]\.uuid' is not a lower-case LUKS UUID/);
  });
});

describe.skipIf(!have)("bind: the cvm-unlock LUKS2 token", () => {
  let img: LuksImage;
  beforeAll(() => {
    img = makeLuksImage(work, "bound.img");
  });

  it("writes the token via cryptsetup, reads it back, replaces it on rebind", async () => {
    const r = await runCli([
      "bind",
      img.file,
      "--kbs",
      kbs.url,
      "--resource",
      "default/key/bound",
      "--ca",
      pki.caFile,
      "--key-slot",
      "0",
    ]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout.toString()).toMatch(/cvm-unlock token 0 added/);
    expect(r.stdout.toString()).toContain(
      `pins: {"uuid":"${img.uuid}","luks2_digest_sha256":"${luks2DigestFingerprint(readLuks2Header(img.file))}"}`,
    );
    expect(tokenExport(img.file, 0)).toEqual({
      type: "cvm-unlock",
      keyslots: ["0"],
      cvm_unlock_token: 1,
      kbs_endpoints: [kbs.url],
      resource: "default/key/bound",
      ca_sha256: caFingerprint(pki.caPem),
    });
    const again = await runCli(["bind", img.file, "--kbs", kbs.url, "--resource", "default/key/bound"]);
    expect(again.code, again.stderr).toBe(0);
    expect(again.stdout.toString()).toMatch(/token 0 replaced/);
    expect(readLuks2Header(img.file).tokens.size).toBe(1);
    const bad = await runCli(["bind", img.file, "--kbs", "ftp://x", "--resource", "default/key/bound"]);
    expect(bad.code).toBe(EXIT_CODES.usage);
  });

  it("unlock follows the token only within what the trusted config allows; config --explain shows the source", async () => {
    kbs.setResource("default/key/bound", img.key);
    expect(
      (await runCli(["bind", img.file, "--kbs", kbs.url, "--resource", "default/key/bound", "--ca", pki.caFile])).code,
    ).toBe(0);
    const allowed = {
      trust: true,
      allowed_endpoints: [kbs.url],
      allowed_ca_files: [pki.caFile],
      allowed_resources: ["default/key/*"],
    };
    const cfgFile = path.join(work, "token-config.json");
    fs.writeFileSync(
      cfgFile,
      JSON.stringify({
        kbs: { request_timeout_s: 10 },
        platform: { tee: "sample", allow_sample: true },
        unlock: { luks_token: allowed },
      }),
    );
    const ok = await runCli(["unlock", "--test-only", "--config", cfgFile, "--device", img.file]);
    expect(ok.code, ok.stderr).toBe(0);

    const explain = await runCli(["config", "--explain", "--config", cfgFile, "--device", img.file]);
    expect(explain.code, explain.stderr).toBe(0);
    const text = explain.stdout.toString();
    expect(text).toMatch(
      new RegExp(`kbs\\.endpoints\\s+\\["${kbs.url.replace(/[/.]/g, "\\$&")}"\\]\\s+\\[LUKS2 token 0 on `),
    );
    expect(text).toMatch(/kbs\.ca_file\s+".*ca\.pem"\s+\[LUKS2 token 0 on /);
    expect(text).toMatch(/unlock\.luks_token\.trust\s+true\s+\[file:/);
    expect(text).toMatch(/kbs\.insecure_http\s+false\s+\[default\]/);

    // Untrusted token: ignored, so no endpoint at all.
    const untrusted = path.join(work, "untrusted.json");
    fs.writeFileSync(untrusted, JSON.stringify({ platform: { tee: "sample", allow_sample: true } }));
    const u = await runCli([
      "unlock",
      "--test-only",
      "--config",
      untrusted,
      "--device",
      img.file,
      "--log-format",
      "text",
    ]);
    expect(u.code).toBe(EXIT_CODES.config);
    expect(u.stderr).toMatch(/ignoring the cvm-unlock LUKS2 token/);

    // An endpoint the trusted config does not list: config error naming the key.
    expect(
      (await runCli(["bind", img.file, "--kbs", "https://127.0.0.1:1", "--resource", "default/key/bound"])).code,
    ).toBe(0);
    const evil = await runCli(["unlock", "--test-only", "--config", cfgFile, "--device", img.file]);
    expect(evil.code).toBe(EXIT_CODES.config);
    expect(evil.stderr).toMatch(
      /LUKS2 token 0 on .* may not set kbs.endpoints to https:\/\/127.0.0.1:1: not in unlock.luks_token.allowed_endpoints/,
    );
  });

  it("a tampered header is refused: broken checksum, or a resealed token with extra powers", async () => {
    const t = makeLuksImage(work, "tamper.img");
    expect((await runCli(["bind", t.file, "--kbs", kbs.url, "--resource", "default/key/bound"])).code).toBe(0);
    const cfg = config({
      unlock: { luks_token: { trust: true, allowed_endpoints: [kbs.url], allowed_resources: ["default/key/*"] } },
    });
    const bytes = fs.readFileSync(t.file);
    const text = bytes.subarray(4096, 16384).toString("latin1");
    const at = 4096 + text.indexOf('"resource":"default/key/bound"');
    // 1. Edit without resealing: our parser refuses the checksum.
    const broken = Buffer.from(bytes);
    broken.write('"resource":"default/key/evil!"', at, "latin1");
    fs.writeFileSync(t.file, broken);
    const r1 = await unlock(cfg, ["--device", t.file]);
    expect(r1.code).toBe(EXIT_CODES.volume);
    expect(r1.stderr).toMatch(/csum.*checksum does not match/);
    // 2. A host that reseals both copies with a token asking for more (insecure_http) is refused by the token parser.
    fs.writeFileSync(t.file, bytes);
    const json = JSON.parse(
      execFileSync(CRYPTSETUP!, ["token", "export", "--token-id", "0", t.file], { encoding: "utf8" }),
    );
    execFileSync(CRYPTSETUP!, ["token", "import", "--json-file", "-", "--token-id", "0", "--token-replace", t.file], {
      input: JSON.stringify({ ...json, insecure_http: true }),
    });
    const r2 = await unlock(cfg, ["--device", t.file]);
    expect(r2.code).toBe(EXIT_CODES.config);
    expect(r2.stderr).toMatch(/LUKS2 token 0 \(type cvm-unlock\): unknown member "insecure_http"/);
  });
});
