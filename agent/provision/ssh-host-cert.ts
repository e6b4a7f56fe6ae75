// The owner's CA signs the new host key's *public* half with OpenSSH's own ssh-keygen (the CA key
// stays wherever the owner keeps it: a file, possibly passphrase-protected, or ssh-agent). Only
// public material is written, to a private temporary directory removed afterwards.
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { CvmError } from "../../platform/util/errors.ts";

export interface HostCertRequest {
  /** "ssh-ed25519 <base64> [comment]" */
  publicKeyLine: string;
  /** ssh-keygen -s argument: the CA private key file (or its public key with -U for ssh-agent). */
  caKey: string;
  keyId: string;
  principals: string[];
  /** ssh-keygen -V (e.g. "+52w", "always:forever"); undefined = ssh-keygen's default (forever). */
  validity: string | undefined;
  useAgent: boolean;
  sshKeygen: string;
}

const MAX_CERT_BYTES = 16 * 1024;

/** The certificate file text ssh-keygen wrote. */
export function signHostCertificate(req: HostCertRequest): Buffer {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "cvm-unlock-ssh-cert-"));
  try {
    const pub = path.join(dir, "host.pub");
    fs.writeFileSync(pub, `${req.publicKeyLine}\n`, { mode: 0o600 });
    const args = [
      "-q",
      "-s",
      req.caKey,
      ...(req.useAgent ? ["-U"] : []),
      "-h",
      "-I",
      req.keyId,
      ...(req.principals.length ? ["-n", req.principals.join(",")] : []),
      ...(req.validity !== undefined ? ["-V", req.validity] : []),
      pub,
    ];
    // stdin/stdout stay the terminal's: ssh-keygen asks for the CA key's passphrase itself.
    const r = spawnSync(req.sshKeygen, args, { stdio: ["inherit", "inherit", "pipe"], encoding: "utf8" });
    if (r.error)
      throw new CvmError("usage", `cannot run ${req.sshKeygen}: ${r.error.message}`, {
        hint: "install OpenSSH's ssh-keygen (openssh-client) or give its path with --ssh-keygen",
      });
    if (r.status !== 0)
      throw new CvmError("usage", `${req.sshKeygen} could not sign the host certificate: ${r.stderr.trim()}`, {
        hint: "check --ca-key (an ed25519 CA private key, or its .pub with --ca-key-in-agent) and --validity",
      });
    const cert = fs.readFileSync(path.join(dir, "host-cert.pub"));
    if (cert.length > MAX_CERT_BYTES) throw new CvmError("usage", "ssh-keygen wrote an oversized certificate");
    return cert;
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}
