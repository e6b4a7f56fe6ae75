import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import {
  receiveSshIdentity,
  sshIdentityEvent,
  sshIdentityRequests,
  type SshIdentityConfig,
} from "../../../agent/identity/ssh-identity.ts";
import { createLogger } from "../../../platform/util/log.ts";
import { CvmError, ParseError } from "../../../platform/util/errors.ts";
import type { Released } from "../../../agent/kbs/types.ts";

const FIX = path.join(import.meta.dirname, "../../fixtures/ssh");
const fixture = (name: string) => fs.readFileSync(path.join(FIX, name));
const FINGERPRINT = "SHA256:8f8p8/kyS1JqtqI90Ik/UpJDGkcdefEzoHMHkRVxTBY";
// The identity directory must be on tmpfs: /dev/shm is one on Linux.
const SHM = "/dev/shm";
const haveShm = fs.existsSync(SHM) && fs.statfsSync(SHM).type === 0x01021994;

const required: SshIdentityConfig = {
  resource: "default/ssh/key",
  certificate_resource: "default/ssh/cert",
  policy: "required",
};
const optional: SshIdentityConfig = { ...required, policy: "optional" };
const secret = (name: string): Released => ({ secret: fixture(name) });
const refused: Released = { refused: new CvmError("resource-missing", "KBS says no") };

let base: string;
let dir: string;
let lines: string[];
const log = () => createLogger({ format: "text", verbose: false, write: (l) => lines.push(l) });
beforeEach(() => {
  lines = [];
  if (!haveShm) return;
  base = fs.mkdtempSync(path.join(SHM, "ssh-identity-"));
  dir = path.join(base, "ssh");
});
afterEach(() => {
  if (base) fs.rmSync(base, { recursive: true, force: true });
});

const mode = (f: string) => fs.statSync(path.join(dir, f)).mode & 0o777;

describe("SSH identity requests and event", () => {
  it("asks for the key then the certificate; optional makes both optional", () => {
    expect(sshIdentityRequests(required)).toEqual([
      { path: "default/ssh/key", optional: false },
      { path: "default/ssh/cert", optional: false },
    ]);
    expect(sshIdentityRequests({ resource: "a/b/c", certificate_resource: undefined, policy: "optional" })).toEqual([
      { path: "a/b/c", optional: true },
    ]);
  });
  it("measures the fingerprint, or none", () => {
    expect(sshIdentityEvent({ fingerprint: FINGERPRINT })).toBe(`cvm-unlock:ssh-host-key:${FINGERPRINT}`);
    expect(sshIdentityEvent({ fingerprint: undefined })).toBe("cvm-unlock:ssh-host-key:none");
  });
});

describe.skipIf(!haveShm)("receiving the SSH identity into tmpfs", () => {
  it("installs the re-encoded key (0600), public key and certificate (0644) in a 0700 directory", () => {
    const o = receiveSshIdentity(required, [secret("host_ed25519"), secret("host_ed25519-cert.pub")], dir, log());
    expect(o.fingerprint).toBe(FINGERPRINT);
    expect(o.certificate?.principals).toEqual(["vm.example", "10.0.2.15"]);
    expect(fs.statSync(dir).mode & 0o777).toBe(0o700);
    expect(mode("ssh_host_ed25519_key")).toBe(0o600);
    expect(mode("ssh_host_ed25519_key.pub")).toBe(0o644);
    expect(mode("ssh_host_ed25519_key-cert.pub")).toBe(0o644);
    expect(fs.readFileSync(path.join(dir, "ssh_host_ed25519_key")).equals(fixture("host_ed25519"))).toBe(true);
    expect(fs.readFileSync(path.join(dir, "ssh_host_ed25519_key.pub"), "utf8")).toBe(
      fixture("host_ed25519.pub").toString(),
    );
    expect(fs.readdirSync(dir).sort()).toEqual([
      "ssh_host_ed25519_key",
      "ssh_host_ed25519_key-cert.pub",
      "ssh_host_ed25519_key.pub",
    ]);
    expect(lines.join("")).toContain(FINGERPRINT);
    expect(lines.join("")).not.toContain(fixture("host_ed25519").toString().split("\n")[1]!);
  });

  it("required: a refused key, a malformed key or a certificate for another key fail, writing nothing", () => {
    expect(() => receiveSshIdentity(required, [refused, secret("host_ed25519-cert.pub")], dir, log())).toThrow(
      /did not release the host key default\/ssh\/key: KBS says no/,
    );
    expect(() => receiveSshIdentity(required, [secret("encrypted_ed25519"), refused], dir, log())).toThrow(ParseError);
    expect(() =>
      receiveSshIdentity(required, [secret("host_ed25519"), secret("other_ed25519-cert.pub")], dir, log()),
    ).toThrow(/certifies another key/);
    expect(() => receiveSshIdentity(required, [secret("host_ed25519"), refused], dir, log())).toThrow(
      /did not release the host certificate/,
    );
    expect(fs.existsSync(dir)).toBe(false);
  });

  it("optional: a refusal installs nothing, removes an earlier key and says why", () => {
    receiveSshIdentity(required, [secret("host_ed25519"), secret("host_ed25519-cert.pub")], dir, log());
    const o = receiveSshIdentity(optional, [secret("host_ed25519"), secret("other_ed25519-cert.pub")], dir, log());
    expect(o.fingerprint).toBeUndefined();
    expect(fs.readdirSync(dir)).toEqual([]);
    expect(lines.join("")).toMatch(/not installed.*certifies another key.*sshd gets no host key/);
  });

  it("refuses a directory that is a symlink, and one on a disk", () => {
    fs.mkdirSync(path.join(base, "elsewhere"));
    fs.symlinkSync(path.join(base, "elsewhere"), dir);
    expect(() =>
      receiveSshIdentity(required, [secret("host_ed25519"), secret("host_ed25519-cert.pub")], dir, log()),
    ).toThrow(/is not a directory/);
    const disk = fs.mkdtempSync(path.join(import.meta.dirname, ".ssh-identity-disk-"));
    try {
      const onDisk = fs.statfsSync(disk).type !== 0x01021994;
      if (onDisk)
        expect(() =>
          receiveSshIdentity(
            required,
            [secret("host_ed25519"), secret("host_ed25519-cert.pub")],
            path.join(disk, "ssh"),
            log(),
          ),
        ).toThrow(/not on tmpfs.*never reach a disk/);
    } finally {
      fs.rmSync(disk, { recursive: true, force: true });
    }
  });

  it("refuses a directory another user owns; under optional, removes nothing through a symlinked directory", () => {
    const good = [secret("host_ed25519"), secret("host_ed25519-cert.pub")];
    if (process.getuid!() === 0) {
      fs.mkdirSync(dir, { mode: 0o700 });
      fs.chownSync(dir, 4242, 4242);
      expect(() => receiveSshIdentity(required, good, dir, log())).toThrow(/belongs to uid 4242/);
      expect(fs.readdirSync(dir)).toEqual([]);
      fs.rmdirSync(dir);
    }
    const elsewhere = path.join(base, "elsewhere");
    fs.mkdirSync(elsewhere);
    fs.writeFileSync(path.join(elsewhere, "ssh_host_ed25519_key"), "not ours");
    fs.symlinkSync(elsewhere, dir);
    expect(receiveSshIdentity(optional, [refused, refused], dir, log()).fingerprint).toBeUndefined();
    expect(fs.readFileSync(path.join(elsewhere, "ssh_host_ed25519_key"), "utf8")).toBe("not ours");
  });

  it("--test-only (no directory): checks without writing", () => {
    const o = receiveSshIdentity(required, [secret("host_ed25519"), secret("host_ed25519-cert.pub")], undefined, log());
    expect(o.fingerprint).toBe(FINGERPRINT);
    expect(fs.existsSync(dir)).toBe(false);
    expect(() => receiveSshIdentity(required, [secret("ecdsa_host"), refused], undefined, log())).toThrow(ParseError);
  });
});
