// VM boot tests of the attested SSH host identity (docs/SSH-IDENTITY.md), two boots:
//   ssh: the owner makes the identity with `cvm-unlock ssh-identity` (key in memory, host
//     certificate from a throwaway CA, both uploaded through the test KBS's admin API); the
//     initramfs (identity.ssh in its config) fetches it in the disk key's attested session; the real
//     Debian 12 root (systemd, OpenSSH 9.2, the image kit, and its own install-time host keys left
//     in place) starts sshd; ssh-keyscan through QEMU user networking (host loopback) sees exactly
//     the released key and certificate, none of the image's keys.
//   ssh-refused: a KBS that does not release the identity: under "required" the boot fails closed
//     before the root is opened (busybox root: cheaper, and the root never gets that far).
// cloud-init is not in the test image (its first boot is too slow under TCG); its drop-in is
// checked in test/integration/ssh-image-kit.test.ts.
import { execFile, execFileSync } from "node:child_process";
import * as fs from "node:fs";
import * as net from "node:net";
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import type { TestKbs } from "../kbs/server.ts";
import { startE2eKbs } from "./harness/kbs.ts";
import { runCli } from "../helpers/binary.ts";
import { findSecret, rootMarker } from "./harness/console.ts";
import { readManifest, REPO, runSetup, type E2eManifest } from "./harness/manifest.ts";
import { Vm, type BootResult } from "./harness/vm.ts";

const CMDLINE =
  "console=ttyS0 panic=-1 tsc=reliable loglevel=4 log_buf_len=4M printk.time=1 printk.devkmsg=on systemd.journald.forward_to_kmsg=1 systemd.journald.max_level_kmsg=info";
/** A full Debian userspace under TCG: generous (measured in docs/PERFORMANCE.md). */
const BOOT_TIMEOUT_MS = 600_000;
const RUNS = path.join(REPO, ".cache", "e2e");
const KEY_RESOURCE = "default/ssh/host";
const CERT_RESOURCE = "default/ssh/host-cert";

let m: E2eManifest;
let kbs: TestKbs;
let work: string;
let active: Vm | undefined;
let owner: { stdout: string; fingerprint: string; knownHostsKey: string };
const timings: Record<string, number> = {};

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const { port } = s.address() as net.AddressInfo;
      s.close(() => resolve(port));
    });
  });
}

async function boot(
  name: string,
  o: { initrd: string; disk: string; hostForwards?: { hostPort: number; guestPort: number }[] },
  during?: (vm: Vm, t0: number) => Promise<void>,
): Promise<{ result: BootResult; text: string; vm: Vm }> {
  const workDir = path.join(RUNS, name);
  fs.rmSync(workDir, { recursive: true, force: true });
  const vm = new Vm({
    kernel: m.kernel,
    initrd: o.initrd,
    disk: o.disk,
    cmdline: CMDLINE,
    swtpmTemplate: m.swtpmTemplate,
    workDir,
    timeoutMs: BOOT_TIMEOUT_MS,
    ...(o.hostForwards ? { hostForwards: o.hostForwards } : {}),
  });
  active = vm;
  try {
    const t0 = Date.now();
    await vm.start();
    if (during) await during(vm, t0);
    await vm.stop();
    const result = await vm.exited();
    return { result, text: vm.text(), vm };
  } finally {
    await vm.stop();
    active = undefined;
  }
}

/** ssh-keyscan against the forwarded port ("type base64" per key or certificate); [] while sshd is not answering yet. */
function keyscan(port: number, args: string[]): Promise<string[]> {
  // Not spawnSync: the console of the VM is read by this process's event loop.
  return new Promise((resolve) => {
    execFile(
      "ssh-keyscan",
      ["-T", "15", "-p", String(port), ...args, "127.0.0.1"],
      { encoding: "utf8", timeout: 40_000 },
      (_err, stdout) =>
        resolve(
          String(stdout ?? "")
            .split("\n")
            .filter((l) => l && !l.startsWith("#"))
            // "host type key" for keys; certificates (-c) come without the host field.
            .map((l) => {
              const f = l.split(" ");
              const at = f.findIndex((x) => /^(ssh|ecdsa|sk)-/.test(x));
              return f.slice(at, at + 2).join(" ");
            }),
        ),
    );
  });
}

describe("VM boot: attested SSH host identity", () => {
  beforeAll(() => {
    // What these boots need (npm run e2e has run every step already).
    runSetup(1_500_000, ["deps", "kernel", "tls", "tpm", "disk", "debroot", "sshroot"]);
    m = readManifest();
    fs.mkdirSync(RUNS, { recursive: true });
    work = fs.mkdtempSync(path.join(RUNS, "ssh-owner-"));
  }, 1_600_000);

  beforeAll(async () => {
    kbs = await startE2eKbs(m, {
      resources: { "default/key/root": new Uint8Array(fs.readFileSync(m.diskKeyFile)) },
      admin: { mode: "InsecureAllowAll" },
    });
    // The owner's side: a throwaway SSH CA, then `cvm-unlock ssh-identity` (the product binary).
    const ca = path.join(work, "ssh-ca");
    execFileSync("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-C", "e2e-ca", "-f", ca]);
    // Asynchronously: the KBS answering it runs in this process.
    const r = await runCli(
      [
        "ssh-identity",
        "--kbs",
        `https://127.0.0.1:${m.kbsPort}`,
        "--ca",
        path.join(m.tlsDir, "ca.pem"),
        "--admin-anonymous",
        "--resource",
        KEY_RESOURCE,
        "--certificate-resource",
        CERT_RESOURCE,
        "--ca-key",
        ca,
        "--principal",
        "cvm-e2e",
        "--validity",
        "+1d",
      ],
      { timeoutMs: 120_000 },
    );
    expect(r.code, r.stderr).toBe(0);
    const stdout = r.stdout.toString();
    const fingerprint = /^host key: (SHA256:\S+) \(ED25519\)$/m.exec(stdout)![1]!;
    const knownHostsKey = /^ {2}cvm-e2e (ssh-ed25519 \S+)$/m.exec(stdout)![1]!;
    owner = { stdout, fingerprint, knownHostsKey };
  });

  afterAll(async () => {
    await active?.stop();
    await kbs?.close();
    if (work) fs.rmSync(work, { recursive: true, force: true });
    if (Object.keys(timings).length)
      fs.writeFileSync(path.join(RUNS, "ssh-boot-timings.json"), JSON.stringify(timings, null, 2) + "\n");
  });

  test("ssh: sshd in the attested Debian root offers exactly the released host key and certificate", async () => {
    const port = await freePort();
    const cert = Buffer.from(kbs.resources.get(CERT_RESOURCE)!).toString().trim();
    const imageKeys = fs
      .readdirSync(path.join(m.debroot, "etc/ssh"))
      .filter((f) => /^ssh_host_.*_key\.pub$/.test(f))
      .map((f) =>
        fs
          .readFileSync(path.join(m.debroot, "etc/ssh", f), "utf8")
          .split(" ")
          .slice(0, 2)
          .join(" "),
      );
    expect(imageKeys.length).toBeGreaterThanOrEqual(3); // the image does ship its own keys
    let scanned: { ed25519: string[]; all: string[]; certs: string[] } | undefined;
    kbs.resetStats();
    const { text } = await boot(
      "ssh",
      { initrd: m.initrdSsh, disk: m.diskSsh, hostForwards: [{ hostPort: port, guestPort: 22 }] },
      async (vm, t0) => {
        // Poll sshd itself: once a getty runs on the serial console, systemd stops printing
        // "Started ssh.service" there, so the console cannot say when sshd is up.
        const until = t0 + BOOT_TIMEOUT_MS - 60_000;
        while (!scanned && Date.now() < until && !/Failed to start ssh\.service/.test(vm.text())) {
          const ed25519 = await keyscan(port, ["-t", "ed25519"]);
          if (!ed25519.length) {
            await new Promise((r) => setTimeout(r, 5000));
            continue;
          }
          // Each scan is a full key exchange, slow under TCG: a few tries each.
          const retried = async (args: string[]) => {
            for (let i = 0; i < 5; i++) {
              const got = await keyscan(port, args);
              if (got.length) return got;
            }
            return [];
          };
          scanned = { ed25519, all: await retried([]), certs: await retried(["-c", "-t", "ed25519"]) };
        }
        timings.keyscanMs = Date.now() - t0;
      },
    );
    expect(scanned, `ssh-keyscan got no answer; console: ${RUNS}/ssh/console.log`).toBeDefined();
    expect(scanned!.ed25519).toEqual([owner.knownHostsKey]);
    // No other key type either: the image's RSA/ECDSA/ed25519 keys are on its disk, not offered.
    expect(scanned!.all).toEqual([owner.knownHostsKey]);
    for (const k of imageKeys) expect(scanned!.all).not.toContain(k);
    expect(scanned!.certs).toEqual([cert.split(" ").slice(0, 2).join(" ")]);
    // Released in one attested session with the disk key, measured before switch-root.
    expect(kbs.stats.released).toBeGreaterThanOrEqual(3);
    expect(text).toMatch(new RegExp(`SSH host key ${owner.fingerprint.replace(/[+/]/g, "\\$&")} installed`));
    expect(text).toMatch(/extended PCR 15 \([^)]*\) with "cvm-unlock:ssh-host-key:SHA256:/);
    // The secret stays out of the console.
    const key = Buffer.from(kbs.resources.get(KEY_RESOURCE)!);
    expect(findSecret(Buffer.from(text, "latin1"), key)).toEqual([]);
    expect(text.includes("PRIVATE KEY")).toBe(false);
  });

  test("ssh-refused: a KBS that does not release the identity fails the boot closed (policy required)", async () => {
    const key = kbs.resources.get(KEY_RESOURCE)!;
    kbs.resources.delete(KEY_RESOURCE);
    kbs.resetStats();
    try {
      const { result, text } = await boot("ssh-refused", { initrd: m.initrdSsh, disk: m.disk }, async (vm) => {
        await vm.waitFor(/reboot: Power down|Powering off/, BOOT_TIMEOUT_MS - 60_000);
        await vm.exited();
      });
      expect(result.timedOut, `no poweroff; console: ${RUNS}/ssh-refused/console.log`).toBe(false);
      expect(rootMarker(text)).toBeUndefined();
      expect(text).toMatch(
        /cvm-unlock: unlock failed with exit \d+ \([a-z-]+\): [^\n]*default\/ssh\/host[^\n]*powering off/,
      );
      expect(text).not.toMatch(/extended PCR 15 \([^)]*\) with "cryptsetup:root/);
      expect(text).not.toMatch(/login:|Give root password|emergency mode/i);
    } finally {
      kbs.resources.set(KEY_RESOURCE, key);
    }
  });
});
