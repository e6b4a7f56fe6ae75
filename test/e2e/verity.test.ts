// VM boot tests of the KBS-released dm-verity root (docs/VERITY.md): one initramfs, built with a
// `verity` config and the test signer's certificate (test/e2e/setup.sh step verity); the root hash
// is nowhere in the image or on the command line, only in the KBS resource default/verity/root.
// The host attacks each defence: five boots share the images.
//   verity-ok:        the signed hash of image v1 -> read-only verity root + LUKS2 /var from the same session
//   verity-wrong:     a validly signed hash of another image, partitions named by label -> refused, poweroff
//   verity-tampered:  one block of the root flipped on the host after provisioning -> panic-on-corruption, no root
//   verity-unsigned:  the right hash without the owner's signature -> refused before any device is touched
//   verity-new-image: the KBS serves image v2's hash -> the same initramfs boots v2 (no rebuild)
import { spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import * as fs from "node:fs";
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import type { TestKbs } from "../kbs/server.ts";
import { findSecret, pcr15, rootMarker } from "./harness/console.ts";
import { startE2eKbs } from "./harness/kbs.ts";
import { readManifest, REPO, runSetup, type E2eManifest } from "./harness/manifest.ts";
import { Vm, type BootResult } from "./harness/vm.ts";

const CMDLINE =
  "console=ttyS0 panic=-1 tsc=reliable loglevel=4 log_buf_len=4M printk.time=1 printk.devkmsg=on systemd.journald.forward_to_kmsg=1 systemd.journald.max_level_kmsg=info";
const VERITY_RESOURCE = "default/verity/root";
const VAR_RESOURCE = "default/key/var";
const VAR_UUID = "c5a1f00d-e2e0-4e2e-8e2e-00000000a0a0";
const RUNS = path.join(REPO, ".cache", "e2e");
/** The data partition starts at 1 MiB (setup.sh verity_image). */
const DATA_OFFSET = 1024 * 1024;

const sha256 = (b: Uint8Array | string) => new Uint8Array(createHash("sha256").update(b).digest());
const extend = (pcr: Uint8Array, event: string) => sha256(Buffer.concat([pcr, sha256(event)]));
const hex = (b: Uint8Array) => Buffer.from(b).toString("hex");

let m: E2eManifest;
let kbs: TestKbs;
let varKey: Uint8Array;
const consoles: { name: string; bytes: Buffer }[] = [];
let active: Vm | undefined;

interface Resource {
  v: 1;
  volumes: { name: string; roothash: string; data?: string; hash?: string; signature_p7s_b64?: string }[];
}
const resource = (name: "v1" | "v2"): Resource =>
  JSON.parse(fs.readFileSync(path.join(m.verityDir, `${name}.json`), "utf8"));
const serve = (r: Resource) => kbs.setResource(VERITY_RESOURCE, JSON.stringify(r));

async function boot(name: string, disk: string): Promise<{ result: BootResult; text: string }> {
  const workDir = path.join(RUNS, name);
  fs.rmSync(workDir, { recursive: true, force: true });
  const vm = new Vm({
    kernel: m.kernel,
    initrd: m.initrdVerity,
    cmdline: CMDLINE,
    disk,
    swtpmTemplate: m.swtpmTemplate,
    workDir,
    timeoutMs: 300_000,
  });
  active = vm;
  try {
    await vm.start();
    const result = await vm.exited();
    consoles.push({ name, bytes: vm.consoleBytes() });
    return { result, text: vm.text() };
  } finally {
    await vm.stop();
    active = undefined;
  }
}

/** The guest refused and powered off (the module's default failure policy), never reaching a root. */
function expectRefusedPoweroff(name: string, result: BootResult, text: string, why: RegExp): void {
  expect(result.timedOut, `no poweroff; console: ${RUNS}/${name}/console.log`).toBe(false);
  expect(result.code).toBe(0);
  expect(text).not.toMatch(/CVM-E2E-MARKER|CVM-E2E-VAR/);
  expect(text, `console: ${RUNS}/${name}/console.log`).toMatch(why);
  expect(text).toMatch(/cvm-unlock: unlock failed with exit 15 \(volume\)/);
}

describe("VM boot: dm-verity root whose hash only the KBS holds", () => {
  beforeAll(() => {
    runSetup(1_500_000, ["deps", "kernel", "tls", "tpm", "verity"]);
    m = readManifest();
    varKey = new Uint8Array(fs.readFileSync(path.join(m.verityDir, "var.key")));
    fs.mkdirSync(RUNS, { recursive: true });
  }, 1_600_000);

  beforeAll(async () => {
    kbs = await startE2eKbs(m, { resources: { [VAR_RESOURCE]: varKey } });
  });

  afterAll(async () => {
    await active?.stop();
    await kbs?.close();
  });

  test("verity-ok: the KBS's signed hash opens a read-only verity root; LUKS2 /var from the same session", async () => {
    const r1 = resource("v1");
    serve(r1);
    kbs.resetStats();
    const { result, text } = await boot("verity-ok", path.join(m.verityDir, "disk-v1.img"));
    expect(result.timedOut, `console: ${RUNS}/verity-ok/console.log`).toBe(false);
    const marker = rootMarker(text);
    expect(marker, `no switch-root marker; console: ${RUNS}/verity-ok/console.log`).toMatchObject({
      rootDevice: "/dev/mapper/root",
      rootFs: "ext4",
      content: "verity-root-v1",
    });
    expect(marker!.dmNames.sort()).toEqual(["root", "var"]);
    expect(text).toMatch(/CVM-E2E-VAR: mounted content=luks-var-ok written=ok/);
    expect(text).toMatch(/CVM-E2E-ROOT-RO: yes/);
    // the verity root, then /var, then leaving the initrd
    const roothash = r1.volumes[0]!.roothash;
    let pcr = extend(new Uint8Array(32), `verity:root:${roothash}`);
    pcr = extend(pcr, `cryptsetup:var:${VAR_UUID}`);
    expect(pcr15(text)).toBe(hex(extend(pcr, "cvm-unlock:leave-initrd")));
    // one attested session: one handshake, two resources under its token
    expect(kbs.stats.requests.auth).toBe(1);
    expect(kbs.stats.attested).toBe(1);
    expect(kbs.stats.released).toBe(2);
    expect(text).toMatch(/\/sysroot: on dm-verity root \(CRYPT-VERITY-[0-9a-f]{32}-root\), ext4: OK/);
  });

  test("verity-wrong: a validly signed hash of another image is refused before veritysetup and the guest powers off", async () => {
    // the signer signed v2's hash; the host attached disk v1 (partitions named by label, so the
    // lookup finds them and the root block check must refuse the hash: veritysetup would map it)
    const wrong = resource("v2");
    wrong.volumes[0] = { ...wrong.volumes[0]!, data: "PARTLABEL=root-data", hash: "PARTLABEL=root-hash" };
    serve(wrong);
    kbs.resetStats();
    const { result, text } = await boot("verity-wrong", path.join(m.verityDir, "disk-v1.img"));
    expectRefusedPoweroff("verity-wrong", result, text, /is not the hash of the hash tree on/);
  });

  test("verity-tampered: a root block flipped on the host after provisioning triggers panic-on-corruption, never a root", async () => {
    const disk = path.join(RUNS, "verity-tampered.img");
    fs.mkdirSync(RUNS, { recursive: true });
    fs.copyFileSync(path.join(m.verityDir, "disk-v1.img"), disk);
    const fd = fs.openSync(disk, "r+");
    try {
      // block 0 of the ext4 root (boot sector area before the superblock: every mount reads this block)
      const b = Buffer.alloc(1);
      fs.readSync(fd, b, 0, 1, DATA_OFFSET + 512);
      b[0]! ^= 0xff;
      fs.writeSync(fd, b, 0, 1, DATA_OFFSET + 512);
    } finally {
      fs.closeSync(fd);
    }
    serve(resource("v1"));
    const { result, text } = await boot("verity-tampered", disk);
    fs.rmSync(disk, { force: true });
    expect(result.timedOut, `console: ${RUNS}/verity-tampered/console.log`).toBe(false);
    expect(text).not.toMatch(/CVM-E2E-MARKER|CVM-E2E-VAR/);
    expect(text).toMatch(/device-mapper: verity: .*data block 0 is corrupted/);
    expect(text).toMatch(/Kernel panic/);
  });

  test("verity-unsigned: the right hash without the owner's signature is refused before any device is touched", async () => {
    const unsigned = resource("v1");
    delete unsigned.volumes[0]!.signature_p7s_b64;
    serve(unsigned);
    kbs.resetStats();
    const { result, text } = await boot("verity-unsigned", path.join(m.verityDir, "disk-v1.img"));
    expectRefusedPoweroff("verity-unsigned", result, text, /carries no signature_p7s_b64/);
    expect(text).not.toMatch(/veritysetup open/);
    // refused before /var: its key was never released
    expect(kbs.stats.released).toBe(1);
  });

  test("verity-new-image: the KBS serving image v2's hash boots v2 with the same initramfs", async () => {
    serve(resource("v2"));
    const { result, text } = await boot("verity-new-image", path.join(m.verityDir, "disk-v2.img"));
    expect(result.timedOut, `console: ${RUNS}/verity-new-image/console.log`).toBe(false);
    expect(rootMarker(text)?.content, `console: ${RUNS}/verity-new-image/console.log`).toBe("verity-root-v2");
  });

  test("the initramfs masks the generators that could set up a root without the KBS's hash; no console holds the /var key", () => {
    const listing = spawnSync("lsinitrd", [m.initrdVerity], { encoding: "utf8", maxBuffer: 64 << 20 }).stdout;
    expect(listing).toMatch(/etc\/systemd\/system-generators\/systemd-gpt-auto-generator -> \/dev\/null/);
    expect(listing).toMatch(/etc\/systemd\/system-generators\/systemd-veritysetup-generator -> \/dev\/null/);
    expect(listing).toMatch(/usr\/s?bin\/veritysetup$/m);
    expect(listing).toMatch(/dm-verity\.ko/);
    // the root hash is in no file of the image: only the KBS holds it
    const config = spawnSync("lsinitrd", ["-f", "etc/cvm-unlock/config.json", m.initrdVerity], { encoding: "utf8" });
    expect(config.stdout).toMatch(/"resource": "default\/verity\/root"/);
    for (const v of ["v1", "v2"] as const) expect(config.stdout).not.toContain(resource(v).volumes[0]!.roothash);
    expect(consoles.length).toBeGreaterThanOrEqual(3);
    for (const c of consoles) expect(findSecret(c.bytes, varKey), `${c.name}: /var key in console`).toEqual([]);
  });
});
