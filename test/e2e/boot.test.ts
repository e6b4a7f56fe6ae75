// VM boot tests: the product initramfs (dracut module 90cvm-unlock + dist/cvm-unlock) boots a
// Debian kernel under QEMU/TCG with swtpm as the guest's TPM, attests with tee `tpm` to the test
// KBS on the host loopback (guest: https://10.0.2.2:47443), opens the LUKS2 root and switches
// into it. Built once by test/e2e/setup.sh (cached); four boots share the images.
//   (a) KBS releases the key -> switch-root into the decrypted root; PCR 15 = expected value
//   (c) KBS refuses connections at first, then comes up -> boot succeeds within the deadline
//   (b) KBS policy denies -> with the module's default failure policy the guest measures the
//       failure marker, says why in one console line and powers off: no root, no shell
//   floor: an image without our module, the key baked in (no attestation): the boot-time reference
//   NetworkManager: the image built where NetworkManager is installed brings the network up with it
//   (d) no console log contains the key in any encoding, nor private key material
// Boot timings are written to .cache/e2e/boot-timings.json (docs/PERFORMANCE.md "## Boot").
import { spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import * as fs from "node:fs";
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { onlyInitData, type TestKbs } from "../kbs/server.ts";
import { startE2eKbs } from "./harness/kbs.ts";
import {
  agentPhases,
  bootTimeline,
  findSecret,
  kmsgLines,
  pcr15,
  rootMarker,
  type BootTimeline,
} from "./harness/console.ts";
import { readManifest, REPO, runSetup, type E2eManifest } from "./harness/manifest.ts";
import { Vm, type BootResult } from "./harness/vm.ts";

// Nothing on it is needed by the product (root=, rd.luks=0 and the failure policy come from the
// initramfs' etc/cmdline.d, the root is found by GPT type): these only make the boot observable
// (journal forwarded to the kernel log with timestamps, so the test root can print it) and
// quieter on the console.
const CMDLINE =
  "console=ttyS0 panic=-1 tsc=reliable loglevel=4 log_buf_len=4M printk.time=1 printk.devkmsg=on systemd.journald.forward_to_kmsg=1 systemd.journald.max_level_kmsg=info";
const BOOT_TIMEOUT_MS = 300_000;
const RESOURCE = "default/key/root";
const RUNS = path.join(REPO, ".cache", "e2e");

const sha256 = (b: Uint8Array | string) => new Uint8Array(createHash("sha256").update(b).digest());
const extend = (pcr: Uint8Array, event: string) => sha256(Buffer.concat([pcr, sha256(event)]));
const hex = (b: Uint8Array) => Buffer.from(b).toString("hex");

let m: E2eManifest;
let diskKey: Uint8Array;
let kbs: TestKbs;
const consoles: { name: string; bytes: Buffer }[] = [];
const timings: Record<string, { wallMs: number; timeline: BootTimeline; phases: Record<string, number> }> = {};
let active: Vm | undefined;

/** Direct kernel boot of `initrd`, or `{ uefi: true }`: OVMF boots the UKI on the UEFI disk. */
async function boot(
  name: string,
  initrd: string | { uefi: true },
  during?: (vm: Vm) => Promise<void>,
  qemuArgs: string[] = [],
): Promise<{ vm: Vm; result: BootResult; text: string }> {
  const workDir = path.join(RUNS, name);
  fs.rmSync(workDir, { recursive: true, force: true });
  const how =
    typeof initrd === "string"
      ? { kernel: m.kernel, initrd, disk: m.disk, cmdline: CMDLINE }
      : { uefi: true, disk: m.diskUki };
  const vm = new Vm({ ...how, swtpmTemplate: m.swtpmTemplate, workDir, timeoutMs: BOOT_TIMEOUT_MS, qemuArgs });
  active = vm;
  try {
    await vm.start();
    if (during) await during(vm);
    const result = await vm.exited();
    const text = vm.text();
    consoles.push({ name, bytes: vm.consoleBytes() });
    return { vm, result, text };
  } finally {
    await vm.stop();
    active = undefined;
  }
}

function record(name: string, unit: string, result: BootResult, text: string): void {
  timings[name] = { wallMs: result.wallMs, timeline: bootTimeline(text, unit), phases: agentPhases(text) };
}

describe("VM boot with the cvm-unlock dracut module", () => {
  beforeAll(() => {
    runSetup(1_500_000);
    m = readManifest();
    diskKey = new Uint8Array(fs.readFileSync(m.diskKeyFile));
    expect(diskKey.length).toBe(32);
    fs.mkdirSync(RUNS, { recursive: true });
  }, 1_600_000);

  beforeAll(async () => {
    kbs = await startE2eKbs(m, { resources: { [RESOURCE]: diskKey } });
  });

  afterAll(async () => {
    await active?.stop();
    await kbs?.close();
    if (Object.keys(timings).length)
      fs.writeFileSync(path.join(RUNS, "boot-timings.json"), JSON.stringify(timings, null, 2) + "\n");
  });

  test("(a) the KBS releases the key: switch-root into the decrypted root, PCR 15 measured", async () => {
    kbs.setPolicy("allow");
    kbs.resetStats();
    const { result, text } = await boot("a-release", m.initrdAgent);
    record("agent", "cvm-unlock.service", result, text);
    expect(result.timedOut, `boot timed out; console: ${RUNS}/a-release/console.log`).toBe(false);
    const marker = rootMarker(text);
    expect(marker, `no switch-root marker; console: ${RUNS}/a-release/console.log`).toBeDefined();
    expect(marker).toMatchObject({ rootDevice: "/dev/mapper/root", rootFs: "ext4", content: "encrypted-root-ok" });
    expect(marker!.dmNames).toContain("root");
    // volume identity at unlock, then the leave-initrd marker at switch-root (docs/UNLOCK.md)
    const expected = extend(extend(new Uint8Array(32), `cryptsetup:root:${m.luksUuid}`), "cvm-unlock:leave-initrd");
    expect(pcr15(text)).toBe(hex(expected));
    expect(kbs.stats.attested).toBeGreaterThanOrEqual(1);
    expect(kbs.stats.released).toBe(1);
    const t = timings.agent!.timeline;
    expect(t.unlockDone, "no 'Finished cvm-unlock.service' in the kernel log").toBeDefined();
    expect(t.unlockDone!).toBeLessThan(t.switchRoot!);
    // started early (docs/UNLOCK.md "Boot ordering"): before the network was online, not after it
    expect(t.unlockStart, "no 'Starting cvm-unlock.service'").toBeDefined();
    expect(t.networkOnline, "no network-online.target").toBeDefined();
    expect(t.unlockStart!).toBeLessThan(t.networkOnline!);
    expect(text).toMatch(/leave-initrd: PCR 15 \(opened:root\)/);
    // the mounted root was checked to be our mapping before the switch
    const verified = kmsgLines(text).find((l) => /Finished cvm-unlock-verify-root\.service/.test(l.text));
    expect(verified, "cvm-unlock-verify-root.service did not finish").toBeDefined();
    expect(verified!.t).toBeLessThan(t.switchRoot!);
  });

  test("(c) the KBS is down for the first attempts, then up: the boot still succeeds", async () => {
    kbs.resetStats();
    await kbs.refuseConnections();
    let reopenedAt = 0;
    const { result, text } = await boot("c-late-kbs", m.initrdAgent, async (vm) => {
      // three refused attempts seen by the agent (default settings: no count limit), then the KBS comes up
      const sawRetries = await vm.waitFor(/kbs: [^\n]*; retry in \d+ ms[^\n]*attempt=3/, 240_000);
      await kbs.acceptConnections();
      reopenedAt = Date.now();
      expect(sawRetries, `the agent never retried; console: ${RUNS}/c-late-kbs/console.log`).toBe(true);
    });
    expect(result.timedOut).toBe(false);
    expect(rootMarker(text)?.content, `console: ${RUNS}/c-late-kbs/console.log`).toBe("encrypted-root-ok");
    expect(kbs.stats.released).toBe(1);
    expect(kbs.stats.events.every((e) => e.at >= reopenedAt)).toBe(true);
  });

  test("(b) the KBS policy refuses: default policy measures the failure, says why and powers off, no shell", async () => {
    kbs.resetStats();
    kbs.setPolicy("deny");
    try {
      const { result, text } = await boot("b-deny", m.initrdAgent);
      expect(result.timedOut, `no poweroff; console: ${RUNS}/b-deny/console.log`).toBe(false);
      expect(result.code).toBe(0); // guest poweroff (OnFailure=poweroff.target), not a crash
      expect(rootMarker(text)).toBeUndefined();
      expect(text).not.toMatch(/CVM-E2E-MARKER/);
      expect(text).toMatch(/Failed to start cvm-unlock\.servic/); // the status line is ellipsized
      expect(text).toMatch(/cvm-unlock\[\d+\]: .*(refused|denied|401)/i);
      expect(text).toMatch(/Power(ing)? (off|down)|reboot: Power down/);
      // setup.sh leaves cvm_unlock_on_failure unset: this is the module's default. One line from
      // cvm-unlock-failure.service says why, after the agent extended cvm-unlock:failed:8.
      const why = text.match(/cvm-unlock: unlock failed with exit \d+ [^\n]*/g) ?? [];
      expect(why, `console: ${RUNS}/b-deny/console.log`).toHaveLength(1);
      expect(why[0]).toMatch(
        /^cvm-unlock: unlock failed with exit 8 \(kbs-refused\): .+; failure marker measured into PCR 15; powering off/,
      );
      expect(text).toMatch(/extended PCR 15 \([^)]*sha256[^)]*\) with "cvm-unlock:failed:8"/);
      // nothing offers the host a shell or a login on the console
      expect(text).not.toMatch(
        /login:|Give root password|emergency mode|Press Enter for maintenance|dracut:\/#|sh-\d+\.\d+#/i,
      );
      expect(kbs.stats.attested).toBeGreaterThanOrEqual(1);
      expect(kbs.stats.released).toBe(0);
    } finally {
      kbs.setPolicy("allow");
    }
  });

  // The generic initramfs (cvm_unlock_mode=generic) holds no KBS, CA or volume: the VMM passes
  // init-data as an SMBIOS type 11 string; the agent extends PCR 8 with its digest before quoting,
  // the KBS verifies PCR 8 against the init-data it was sent, and the owner's policy releases the
  // key only to the init-data the owner wrote. A host that changes one byte is refused.
  const TRIPLE = "'".repeat(3);
  const initData = () => {
    const ca = fs.readFileSync(path.join(m.tlsDir, "ca.pem"), "utf8").trim();
    return [
      'version = "0.1.0"',
      'algorithm = "sha256"',
      "[data]",
      `"aa.toml" = ${TRIPLE}`,
      "[token_configs.kbs]",
      `url = "https://10.0.2.2:${m.kbsPort}"`,
      `cert = """`,
      ca,
      `"""`,
      TRIPLE,
      `"cvm-unlock.toml" = ${TRIPLE}`,
      `resource = "${RESOURCE}"`,
      "[platform]",
      'tee = "tpm"',
      TRIPLE,
      "",
    ].join("\n");
  };
  const smbios = (toml: string) => [
    "-smbios",
    `type=11,value=io.cvm-unlock.init-data:${Buffer.from(toml).toString("base64url")}`,
  ];

  test("generic: a distribution's initramfs boots the LUKS2 root with init-data from SMBIOS type 11", async () => {
    const toml = initData();
    kbs.resetStats();
    kbs.setPolicy(onlyInitData(hex(sha256(toml))));
    try {
      const { result, text } = await boot("generic-init-data", m.initrdGeneric, undefined, smbios(toml));
      expect(result.timedOut, `console: ${RUNS}/generic-init-data/console.log`).toBe(false);
      expect(rootMarker(text)?.content, `console: ${RUNS}/generic-init-data/console.log`).toBe("encrypted-root-ok");
      expect(text).toMatch(new RegExp(`init-data from smbios: sha256:${hex(sha256(toml))}`));
      expect(text).toMatch(/init-data sha256:[0-9a-f]{64} is now in PCR 8/);
      expect(kbs.stats.released).toBe(1);
    } finally {
      kbs.setPolicy("allow");
    }
  });

  test("generic: init-data changed by one byte is refused by the owner's policy and the guest powers off", async () => {
    const toml = initData();
    const tampered = toml.replace('tee = "tpm"', 'tee = "tpm" ');
    kbs.resetStats();
    kbs.setPolicy(onlyInitData(hex(sha256(toml))));
    try {
      const { result, text } = await boot("generic-tampered", m.initrdGeneric, undefined, smbios(tampered));
      expect(result.timedOut, `no poweroff; console: ${RUNS}/generic-tampered/console.log`).toBe(false);
      expect(result.code).toBe(0);
      expect(rootMarker(text)).toBeUndefined();
      expect(text).toMatch(/cvm-unlock: unlock failed with exit 8 \(kbs-refused\)/);
      expect(kbs.stats.released).toBe(0);
    } finally {
      kbs.setPolicy("allow");
    }
  });

  // The agent image built in the Debian tree (setup.sh initrd_nm), where NetworkManager is installed:
  // cvm_unlock_network=auto picks it, as dracut's network module would, so the image has
  // NetworkManager + rd.neednet=1 and no systemd-networkd (Fedora/RHEL bring their initrd network
  // up this way). NetworkManager is in that tree only, never on the host.
  test("NetworkManager brings the initrd network up (rd.neednet=1): the agent unlocks the root", async () => {
    const listing = spawnSync("lsinitrd", [m.initrdNm], { encoding: "utf8", maxBuffer: 64 << 20 }).stdout;
    expect(listing).toMatch(/ usr\/sbin\/NetworkManager$/m);
    expect(listing).toMatch(
      /^-rw------- .* usr\/lib\/NetworkManager\/system-connections\/cvm-unlock-dhcp\.nmconnection$/m,
    );
    expect(listing).not.toMatch(/systemd-networkd|90-cvm-unlock-dhcp\.network/);
    const cmdline = spawnSync("lsinitrd", ["-f", "etc/cmdline.d/90cvm-unlock.conf", m.initrdNm], { encoding: "utf8" });
    expect(cmdline.stdout.split(/\s+/)).toContain("rd.neednet=1");

    kbs.setPolicy("allow");
    kbs.resetStats();
    const { result, text } = await boot("nm", m.initrdNm);
    record("nm", "cvm-unlock.service", result, text);
    expect(result.timedOut, `console: ${RUNS}/nm/console.log`).toBe(false);
    expect(rootMarker(text)?.content, `console: ${RUNS}/nm/console.log`).toBe("encrypted-root-ok");
    expect(kbs.stats.released).toBe(1);
    // network-online.target came from NetworkManager's wait-online unit, before the agent ran
    const lines = kmsgLines(text);
    const online = lines.find((l) => /Finished nm-wait-online-initrd\.service/.test(l.text));
    const unlocked = lines.find((l) => /Finished cvm-unlock\.service/.test(l.text));
    expect(online, `nm-wait-online-initrd.service did not finish; console: ${RUNS}/nm/console.log`).toBeDefined();
    expect(unlocked).toBeDefined();
    expect(online!.t).toBeLessThan(unlocked!.t);
    expect(text).not.toMatch(/systemd-networkd/);
    // the DNS server NetworkManager learned by DHCP (QEMU user networking: 10.0.2.3) is in the
    // agent's resolver configuration
    expect(text).toMatch(/cvm-unlock-resolv: [^\n]*\b10\.0\.2\.3\b/);
  });

  test("floor: an image without our module, with a baked-in key (no attestation), boots", async () => {
    const { result, text } = await boot("floor", m.initrdFloor);
    record("floor", "cvm-unlock-e2e-floor.service", result, text);
    expect(rootMarker(text)?.content, `console: ${RUNS}/floor/console.log`).toBe("encrypted-root-ok");
    // nothing of ours ran: no agent line, PCR 15 untouched (no volume or leave-initrd event)
    expect(text).not.toMatch(/cvm-unlock\[\d+\]:/);
    expect(pcr15(text)).toBe(hex(new Uint8Array(32)));
  });

  // Opt-in (CVM_E2E_UKI=1; one more image and a slower OVMF boot): static UKI cmdline without
  // root=, systemd-gpt-auto-generator discovers the root and generates systemd-cryptsetup@root,
  // which the module's drop-in orders after the agent, so it finds the volume already open.
  test.skipIf(process.env.CVM_E2E_UKI !== "1")(
    "UEFI + UKI + gpt-auto root: systemd-cryptsetup waits for the agent",
    async () => {
      runSetup(1_200_000, ["uki"]);
      kbs.setPolicy("allow");
      kbs.resetStats();
      const { result, text } = await boot("uki-gpt-auto", { uefi: true });
      expect(result.timedOut, `console: ${RUNS}/uki-gpt-auto/console.log`).toBe(false);
      expect(rootMarker(text)?.content, `console: ${RUNS}/uki-gpt-auto/console.log`).toBe("encrypted-root-ok");
      const lines = kmsgLines(text);
      const agentDone = lines.find((l) => /Finished cvm-unlock\.service/.test(l.text));
      const sdCrypt = lines.find((l) => /Finished systemd-cryptsetup@root\.service/.test(l.text));
      expect(agentDone, "agent unit did not finish").toBeDefined();
      expect(sdCrypt, "no systemd-cryptsetup@root.service: gpt-auto did not pick up the root").toBeDefined();
      expect(sdCrypt!.t).toBeGreaterThanOrEqual(agentDone!.t);
      expect(kbs.stats.released).toBe(1);
      expect(text).not.toMatch(/Please enter passphrase/);
    },
  );

  test("the booted images were built with dracut's strip pass on, and hold the agent unstripped", () => {
    // setup.sh leaves do_strip at dracut's default (yes), binutils' strip is installed: the
    // agent survives because it goes in without execute bits (cvm-unlock-exec.service)
    const conf = fs.readFileSync(path.join(m.cache, "dracut-agent.conf.d", "99-e2e.conf"), "utf8");
    expect(conf).not.toMatch(/do_strip/);
    expect(spawnSync("strip", ["--version"]).status).toBe(0);
    const agent = spawnSync("lsinitrd", ["-f", "usr/bin/cvm-unlock", m.initrdAgent], { maxBuffer: 512 << 20 });
    expect(agent.status).toBe(0);
    expect(Buffer.compare(agent.stdout, fs.readFileSync(path.join(REPO, "dist", "cvm-unlock")))).toBe(0);
    const listing = spawnSync("lsinitrd", [m.initrdAgent], { encoding: "utf8", maxBuffer: 64 << 20 }).stdout;
    expect(listing).toMatch(/^-rw-r--r-- .* usr\/bin\/cvm-unlock$/m);
  });

  test("the module refuses to build when a file the config names is missing", () => {
    const conf = path.join(RUNS, "missing-file.conf.d");
    fs.rmSync(conf, { recursive: true, force: true });
    fs.mkdirSync(conf, { recursive: true });
    const guest = JSON.parse(fs.readFileSync(path.join(m.cache, "guest-config.json"), "utf8"));
    guest.kbs.init_data_file = "/etc/cvm-unlock/init-data.toml"; // not staged anywhere
    fs.writeFileSync(path.join(conf, "guest-config.json"), JSON.stringify(guest));
    fs.writeFileSync(
      path.join(conf, "99-e2e.conf"),
      fs.readFileSync(path.join(m.cache, "dracut-agent.conf.d", "99-e2e.conf"), "utf8") +
        `cvm_unlock_config="${path.join(conf, "guest-config.json")}"\ncvm_unlock_files_root="${conf}"\n`,
    );
    const out = path.join(RUNS, "missing-file.img");
    const r = spawnSync(
      "dracut",
      ["--force", "--conf", "/dev/null", "--confdir", conf, "--no-hostonly", "--nostrip", "--kver", m.kver].concat([
        "-m",
        "base cvm-unlock",
        out,
      ]),
      { env: { ...process.env, dracutbasedir: path.join(m.cache, "dracut") }, encoding: "utf8", timeout: 300_000 },
    );
    expect(r.status).not.toBe(0);
    expect(r.stderr + r.stdout).toMatch(
      /init-data\.toml \(kbs\.init_data_file in .*guest-config\.json\) does not exist/,
    );
    expect(fs.existsSync(out)).toBe(false);
  });

  test("(d) no console log contains the disk key or private key material", () => {
    expect(consoles.length).toBeGreaterThanOrEqual(3);
    for (const c of consoles) {
      expect(findSecret(c.bytes, diskKey), `${c.name}: key found in console`).toEqual([]);
      expect(c.bytes.includes(Buffer.from("PRIVATE KEY")), `${c.name}: PEM private key in console`).toBe(false);
      expect(c.bytes.includes(Buffer.from('"d":"')), `${c.name}: JWK private member in console`).toBe(false);
    }
  });
});
