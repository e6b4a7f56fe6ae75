// The attested SSH host identity (docs/SSH-IDENTITY.md): which KBS resources carry it, checking
// what the KBS released, writing it to tmpfs for the real root's sshd, and the measured event.
// sshd is pointed at these files by the shipped drop-in (dracut-module/ssh/), which names no other
// host key: when nothing is installed here, sshd has no host key and refuses to start, so a VM
// never silently falls back to the image's own, unattested keys.
import * as fs from "node:fs";
import * as path from "node:path";
import { CvmError, errorMessage } from "../../platform/util/errors.ts";
import type { Logger } from "../../platform/util/log.ts";
import type { Config } from "../config/schema.ts";
import type { Released, ResourceRequest } from "../kbs/types.ts";
import {
  encodeOpensshPrivateKey,
  parseOpensshPrivateKey,
  publicKeyBlob,
  publicKeyLine,
  sshFingerprint,
} from "./openssh-key.ts";
import { certificateCurrent, parseHostCertificate, type HostCertificate } from "./ssh-certificate.ts";

export type SshIdentityConfig = NonNullable<Config["identity"]["ssh"]>;

/** File names inside the identity directory (the shipped sshd drop-in names them). */
export const SSH_HOST_KEY_FILE = "ssh_host_ed25519_key";
export const SSH_HOST_PUB_FILE = "ssh_host_ed25519_key.pub";
export const SSH_HOST_CERT_FILE = "ssh_host_ed25519_key-cert.pub";
/** statfs f_type of the file systems that never reach a disk. */
const TMPFS_MAGIC = 0x01021994;
const RAMFS_MAGIC = 0x858458f6;

/** The identity lives next to the event record (unlock.measure.record_path), in /run/cvm-unlock/ssh. */
export function sshIdentityDir(config: Config): string {
  return path.join(path.dirname(config.unlock.measure.record_path), "ssh");
}

/** The KBS requests for the identity: the key, then its certificate. "optional" makes both optional. */
export function sshIdentityRequests(ssh: SshIdentityConfig): ResourceRequest[] {
  const optional = ssh.policy === "optional";
  return [
    { path: ssh.resource, optional },
    ...(ssh.certificate_resource !== undefined ? [{ path: ssh.certificate_resource, optional }] : []),
  ];
}

export interface SshIdentityOutcome {
  /** The public key's SHA256 fingerprint (ssh-keygen -l), or undefined when nothing was installed. */
  fingerprint: string | undefined;
  certificate?: Pick<HostCertificate, "keyId" | "principals" | "caFingerprint">;
  /** Why nothing was installed (optional policy). */
  reason?: string;
}

/** The measured event: the fingerprint, or "none" when the optional identity was not installed. */
export function sshIdentityEvent(o: SshIdentityOutcome): string {
  return `cvm-unlock:ssh-host-key:${o.fingerprint ?? "none"}`;
}

/**
 * Check what the KBS released for the identity and install it in `dir` (only check it when `dir`
 * is undefined: unlock --test-only). Under "required" any refusal or malformed resource throws (the
 * boot fails closed); under "optional" it is logged and nothing is installed. The released buffers
 * are the caller's to zero.
 */
export function receiveSshIdentity(
  ssh: SshIdentityConfig,
  released: Released[],
  dir: string | undefined,
  log: Logger,
): SshIdentityOutcome {
  try {
    return installSshIdentity(ssh, released, dir, log);
  } catch (e) {
    if (ssh.policy === "required" || !(e instanceof CvmError)) throw e;
    // What sshd finds must match what is measured ("none"): no key from an earlier run of this boot.
    if (dir !== undefined && fs.lstatSync(dir, { throwIfNoEntry: false })?.isDirectory())
      for (const f of [SSH_HOST_KEY_FILE, SSH_HOST_PUB_FILE, SSH_HOST_CERT_FILE])
        fs.rmSync(path.join(dir, f), { force: true });
    log.warning(
      `SSH host identity not installed (identity.ssh.policy is "optional"): ${errorMessage(e)}; sshd gets no host key from cvm-unlock and will not start with the shipped drop-in`,
    );
    return { fingerprint: undefined, reason: e.message };
  }
}

function secretOf(r: Released | undefined, what: string): Buffer {
  if (r === undefined) throw new CvmError("internal", `no KBS answer for the ${what}`);
  if ("refused" in r)
    throw new CvmError(r.refused.kind, `SSH host identity: the KBS did not release the ${what}: ${r.refused.message}`, {
      hint: r.refused.hint ?? "check the resource and its policy at the KBS (docs/SSH-IDENTITY.md)",
    });
  return r.secret;
}

function installSshIdentity(
  ssh: SshIdentityConfig,
  released: Released[],
  dir: string | undefined,
  log: Logger,
): SshIdentityOutcome {
  const key = parseOpensshPrivateKey(secretOf(released[0], `host key ${ssh.resource}`));
  try {
    const cert =
      ssh.certificate_resource !== undefined
        ? parseHostCertificate(secretOf(released[1], `host certificate ${ssh.certificate_resource}`), key.publicKey)
        : undefined;
    if (cert && !certificateCurrent(cert, Date.now() / 1000))
      log.warning(
        `the SSH host certificate ${cert.keyId} is outside its validity window by this VM's clock: clients will refuse it`,
      );
    const fingerprint = sshFingerprint(publicKeyBlob(key.publicKey));
    if (dir !== undefined) {
      const encoded = encodeOpensshPrivateKey(key);
      try {
        writeIdentityFiles(dir, encoded, `${publicKeyLine(key.publicKey, key.comment)}\n`, cert?.line);
      } finally {
        encoded.fill(0);
      }
    }
    log.notice(
      `SSH host key ${fingerprint} ${dir !== undefined ? `installed in ${dir}` : "checked (not installed: --test-only)"}${cert ? ` with certificate ${JSON.stringify(cert.keyId)} (CA ${cert.caFingerprint}, principals ${cert.principals.join(",") || "any"})` : ""}`,
    );
    return {
      fingerprint,
      ...(cert
        ? { certificate: { keyId: cert.keyId, principals: cert.principals, caFingerprint: cert.caFingerprint } }
        : {}),
    };
  } finally {
    key.dispose();
  }
}

/** A 0700 directory on tmpfs/ramfs, ours: never a symlink, never on a disk. */
function prepareDir(dir: string): void {
  fs.mkdirSync(path.dirname(dir), { recursive: true, mode: 0o755 });
  try {
    fs.mkdirSync(dir, { mode: 0o700 });
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== "EEXIST") throw e;
  }
  const st = fs.lstatSync(dir);
  if (!st.isDirectory())
    throw new CvmError("platform", `${dir} exists and is not a directory: refusing to write the SSH host key there`);
  // Another owner could swap the files after we write them, whatever the mode.
  if (st.uid !== process.getuid!())
    throw new CvmError(
      "platform",
      `${dir} belongs to uid ${st.uid}, not to us: refusing to write the SSH host key there`,
    );
  fs.chmodSync(dir, 0o700);
  const type = fs.statfsSync(dir).type;
  if (type !== TMPFS_MAGIC && type !== RAMFS_MAGIC)
    throw new CvmError(
      "platform",
      `${dir} is not on tmpfs (file system type 0x${type.toString(16)}): the SSH host key must never reach a disk`,
      { hint: "unlock.measure.record_path must be under /run (the default); /run must be a tmpfs" },
    );
}

/** Write a file by replacing it atomically (a fresh inode with the final mode, then rename). */
function writeNew(dir: string, name: string, data: Uint8Array, mode: number): void {
  const tmp = path.join(dir, `.${name}.new`);
  fs.rmSync(tmp, { force: true });
  const fd = fs.openSync(
    tmp,
    fs.constants.O_WRONLY | fs.constants.O_CREAT | fs.constants.O_EXCL | fs.constants.O_NOFOLLOW,
    mode,
  );
  try {
    fs.writeSync(fd, data);
    fs.fchmodSync(fd, mode);
  } finally {
    fs.closeSync(fd);
  }
  fs.renameSync(tmp, path.join(dir, name));
}

function writeIdentityFiles(
  dir: string,
  privateKey: Uint8Array,
  publicLine: string,
  certLine: string | undefined,
): void {
  try {
    prepareDir(dir);
    // A certificate from an earlier run must not outlive its key.
    fs.rmSync(path.join(dir, SSH_HOST_CERT_FILE), { force: true });
    writeNew(dir, SSH_HOST_KEY_FILE, privateKey, 0o600);
    writeNew(dir, SSH_HOST_PUB_FILE, Buffer.from(publicLine), 0o644);
    if (certLine !== undefined) writeNew(dir, SSH_HOST_CERT_FILE, Buffer.from(certLine), 0o644);
  } catch (e) {
    if (e instanceof CvmError) throw e;
    throw new CvmError("platform", `cannot write the SSH host identity to ${dir}: ${errorMessage(e)}`, {
      hint: "/run must be a writable tmpfs in the initramfs",
    });
  }
}
