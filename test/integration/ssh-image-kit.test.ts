// The SSH identity image kit (image/ssh/, installed by the packages under /usr/share/cvm-unlock/ssh):
// what install-into-image puts into a root, the sshd pre-start check against a stand-in sshd's
// `sshd -T` output, and the cloud-init and sshd-keygen@ drop-ins' keys (cloud-init is not in the VM
// test image: too slow under TCG, docs/SSH-IDENTITY.md).
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

const KIT = path.join(import.meta.dirname, "../../image/ssh");
const HOST_KEY = "/run/cvm-unlock/ssh/ssh_host_ed25519_key";
let work: string;
beforeAll(() => {
  work = fs.mkdtempSync(path.join(os.tmpdir(), "ssh-kit-"));
});
afterAll(() => fs.rmSync(work, { recursive: true, force: true }));

/** Run the pre-start check against a stand-in sshd that prints `out` for -T and exits with `code`. */
function check(out: string, code = 0): { status: number | null; stderr: string } {
  const fake = path.join(work, `sshd-${Math.random().toString(16).slice(2)}`);
  fs.writeFileSync(fake, `#!/bin/sh\n[ "$1" = -T ] || exit 99\ncat <<'OUT'\n${out}\nOUT\nexit ${code}\n`, {
    mode: 0o755,
  });
  const r = spawnSync(path.join(KIT, "sshd-only-attested-host-key"), [], {
    env: { PATH: "/usr/bin:/bin", CVM_UNLOCK_SSHD: fake },
    encoding: "utf8",
  });
  return { status: r.status, stderr: r.stderr };
}

describe("sshd pre-start check: exactly the attested host key", () => {
  it("passes when sshd -T lists only the attested key", () => {
    expect(check(`port 22\nhostkey ${HOST_KEY}\nhostcertificate ${HOST_KEY}-cert.pub`).status).toBe(0);
  });
  it("refuses when the image's sshd_config adds its own HostKey", () => {
    const r = check(`hostkey /etc/ssh/ssh_host_rsa_key\nhostkey ${HOST_KEY}`);
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/other than the attested.*ssh_host_rsa_key/);
  });
  it("refuses when sshd cannot load the configuration or the key (nothing released)", () => {
    const r = check("sshd: no hostkeys available -- exiting.", 1);
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/no hostkeys available[\s\S]*attested SSH host key .* is missing/);
  });
  it("refuses a configuration with no HostKey (sshd's defaults: the image's keys)", () => {
    expect(check("port 22").status).toBe(1);
  });
});

describe("install-into-image", () => {
  it("installs every drop-in and removes the image's own host keys", () => {
    const root = path.join(work, "root");
    fs.mkdirSync(path.join(root, "etc/ssh"), { recursive: true });
    for (const f of ["ssh_host_ed25519_key", "ssh_host_ed25519_key.pub", "ssh_host_rsa_key", "ssh_host_rsa_key.pub"])
      fs.writeFileSync(path.join(root, "etc/ssh", f), "image key");
    fs.writeFileSync(path.join(root, "etc/ssh/sshd_config"), "Include /etc/ssh/sshd_config.d/*.conf\n");
    const r = spawnSync(path.join(KIT, "install-into-image"), [root], { encoding: "utf8" });
    expect(r.status, r.stderr).toBe(0);
    const files = (dir: string): string[] =>
      fs
        .readdirSync(path.join(root, dir), { recursive: true, withFileTypes: true })
        .filter((d) => d.isFile())
        .map((d) => path.relative(root, path.join(d.parentPath, d.name)))
        .sort();
    expect(files("etc")).toEqual([
      "etc/cloud/cloud.cfg.d/10-cvm-unlock-ssh.cfg",
      "etc/ssh/sshd_config",
      "etc/ssh/sshd_config.d/10-cvm-unlock-host-key.conf",
      "etc/systemd/system/ssh.service.d/10-cvm-unlock-host-key.conf",
      "etc/systemd/system/sshd-keygen@.service.d/10-cvm-unlock.conf",
      "etc/systemd/system/sshd.service.d/10-cvm-unlock-host-key.conf",
    ]);
    expect(fs.statSync(path.join(root, "usr/lib/cvm-unlock/sshd-only-attested-host-key")).mode & 0o777).toBe(0o755);
    const sshd = fs.readFileSync(path.join(root, "etc/ssh/sshd_config.d/10-cvm-unlock-host-key.conf"), "utf8");
    expect(sshd.split("\n").filter((l) => /^Host/.test(l))).toEqual([
      `HostKey ${HOST_KEY}`,
      `HostCertificate ${HOST_KEY}-cert.pub`,
    ]);
    // sshd-keygen@ is skipped exactly when the sshd drop-in is installed.
    const keygen = fs.readFileSync(
      path.join(root, "etc/systemd/system/sshd-keygen@.service.d/10-cvm-unlock.conf"),
      "utf8",
    );
    expect(keygen).toContain("ConditionPathExists=!/etc/ssh/sshd_config.d/10-cvm-unlock-host-key.conf");
  });
});

describe("cloud-init drop-in", () => {
  it("sets ssh_deletekeys false and ssh_genkeytypes to an empty list, and nothing else", () => {
    const text = fs.readFileSync(path.join(KIT, "cloud-init.cfg"), "utf8");
    const settings = text
      .split("\n")
      .filter((l) => l.trim() !== "" && !l.startsWith("#"))
      .map((l) => {
        const m = /^([a-z_]+): (.+)$/.exec(l);
        expect(m, `top-level YAML key: ${l}`).not.toBeNull();
        return [m![1], JSON.parse(m![2]!)];
      });
    // Both values are also JSON, so YAML reads them the same way.
    expect(Object.fromEntries(settings)).toEqual({ ssh_deletekeys: false, ssh_genkeytypes: [] });
  });
});
