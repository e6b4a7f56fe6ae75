// VM boot test of mode B (docs/UNLOCK.md "Mode B"): the initramfs (built by dracut inside the
// Debian tree, with lvm2) has the image's crypttab naming two LUKS2 volumes with the cvm-unlock key
// socket as key file. systemd-cryptsetup opens both; `cvm-unlock serve-keys` attests ONCE to the
// test KBS and serves each its own key; verify-mapping@ checks each live dm table against the
// verified header; LVM activates cvmvg/root on the root volume; verify-root walks the LV down to
// the crypt device we served; the marker root mounts /var from the second volume.
// Built by `test/e2e/setup.sh modeb` (cached). One boot.
import { createHash } from "node:crypto";
import * as fs from "node:fs";
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import type { TestKbs } from "../kbs/server.ts";
import { startE2eKbs } from "./harness/kbs.ts";
import { findSecret, kmsgLines, pcr15, rootMarker } from "./harness/console.ts";
import { readManifest, REPO, runSetup, type E2eManifest } from "./harness/manifest.ts";
import { Vm } from "./harness/vm.ts";

// Only observability: root=, the failure policy and the crypttab come from the initramfs.
const CMDLINE =
  "console=ttyS0 panic=-1 tsc=reliable loglevel=4 log_buf_len=4M printk.time=1 printk.devkmsg=on systemd.journald.forward_to_kmsg=1 systemd.journald.max_level_kmsg=info";
const ROOT_UUID = "c5a1f00d-e2e0-4e2e-8e2e-0000000000b1"; // setup.sh MODEB_ROOT_UUID
const VAR_UUID = "c5a1f00d-e2e0-4e2e-8e2e-0000000000b2"; // setup.sh MODEB_VAR_UUID
const RUN_DIR = path.join(REPO, ".cache", "e2e", "mode-b");

const sha256 = (b: Uint8Array | string) => new Uint8Array(createHash("sha256").update(b).digest());
const extend = (pcr: Uint8Array, event: string) => sha256(Buffer.concat([pcr, sha256(event)]));

let m: E2eManifest;
let kbs: TestKbs;
let keys: { root: Buffer; var: Buffer };
let vm: Vm | undefined;

describe("VM boot, mode B: crypttab + the cvm-unlock key socket", () => {
  beforeAll(() => {
    runSetup(1_500_000);
    runSetup(1_500_000, ["modeb"]);
    m = readManifest();
    keys = {
      root: fs.readFileSync(path.join(m.cache, "modeb-root.key")),
      var: fs.readFileSync(path.join(m.cache, "modeb-var.key")),
    };
  }, 3_100_000);

  beforeAll(async () => {
    kbs = await startE2eKbs(m, {
      resources: { "default/key/modeb-root": keys.root, "default/key/modeb-var": keys.var },
    });
  });

  afterAll(async () => {
    await vm?.stop();
    await kbs?.close();
  });

  test("mode B: root on LVM on LUKS2 and /var on a second LUKS2 volume, both keys from one attestation", async () => {
    fs.rmSync(RUN_DIR, { recursive: true, force: true });
    vm = new Vm({
      kernel: m.kernel,
      initrd: path.join(m.cache, "initrd-modeb.img"),
      disk: path.join(m.cache, "disk-modeb.img"),
      cmdline: CMDLINE,
      swtpmTemplate: m.swtpmTemplate,
      workDir: RUN_DIR,
      timeoutMs: 420_000,
    });
    kbs.resetStats();
    await vm.start();
    const result = await vm.exited();
    const text = vm.text();
    const consoleBytes = vm.consoleBytes();
    await vm.stop();
    const where = `console: ${RUN_DIR}/console.log`;
    expect(result.timedOut, where).toBe(false);

    const marker = rootMarker(text);
    expect(marker, `no switch-root marker; ${where}`).toBeDefined();
    expect(marker).toMatchObject({
      rootDevice: "/dev/mapper/cvmvg-root",
      rootFs: "ext4",
      content: "encrypted-root-ok",
    });
    expect(marker!.dmNames.sort()).toEqual(["cvmvg-root", "root", "var"]);
    expect(text).toMatch(/CVM-E2E-VAR: encrypted-var-ok/);

    // One attestation for both volumes: one /auth, one /attest, two resources.
    expect(kbs.stats.requests.auth).toBe(1);
    expect(kbs.stats.requests.attest).toBe(1);
    expect(kbs.stats.released).toBe(2);
    // systemd-cryptsetup asked for each volume by name over the socket
    expect(text).toMatch(/served the key of volume root/);
    expect(text).toMatch(/served the key of volume var/);
    const lines = kmsgLines(text);
    const at = (re: RegExp) => lines.find((l) => re.test(l.text))?.t;
    const switchRoot = at(/Switching root/);
    for (const unit of [
      /Finished systemd-cryptsetup@root\.service/,
      /Finished systemd-cryptsetup@var\.service/,
      /Finished cvm-unlock-verify-mapping@root\.service/,
      /Finished cvm-unlock-verify-mapping@var\.service/,
      /Finished cvm-unlock-verify-root\.service/,
    ]) {
      expect(at(unit), `${unit.source} missing; ${where}`).toBeDefined();
      expect(at(unit)!).toBeLessThan(switchRoot!);
    }
    // the mapping checks ran before the root device counted as there (and so before its mount)
    expect(at(/Finished cvm-unlock-verify-mapping@root\.service/)!).toBeLessThan(
      at(/Reached target initrd-root-device\.target/)!,
    );
    // both volume identities, measured before the keys were served, then the leave-initrd marker
    const expected = extend(
      extend(extend(new Uint8Array(32), `cryptsetup:root:${ROOT_UUID}`), `cryptsetup:var:${VAR_UUID}`),
      "cvm-unlock:leave-initrd",
    );
    expect(pcr15(text)).toBe(Buffer.from(expected).toString("hex"));
    // never a password prompt on the host's console; never a key in any encoding
    expect(text).not.toMatch(/Please enter passphrase|Give root password|emergency mode/i);
    for (const k of [keys.root, keys.var]) expect(findSecret(consoleBytes, k)).toEqual([]);
  });
});
