// `cvm-unlock ssh-identity`: on the owner's machine, make the SSH host identity a VM receives only
// after attestation (docs/SSH-IDENTITY.md): a fresh ed25519 host key generated in memory (never a
// private key in a file or argv), optionally a host certificate from the owner's CA (ssh-keygen -s
// on the public half), both uploaded as KBS resources through trustee's admin API; then what users
// put in known_hosts and what the image's config needs.
import * as crypto from "node:crypto";
import { Deadline } from "../../platform/util/deadline.ts";
import { CvmError, errorMessage } from "../../platform/util/errors.ts";
import { optBool, optList, optString, type ParsedArgs } from "../cli/args.ts";
import type { Command, CommandIO } from "../cli/command.ts";
import { readCaFile } from "../config/ca-file.ts";
import { RESOURCE_PATH, URL_PATTERN } from "../config/patterns.ts";
import {
  encodeOpensshPrivateKey,
  generateEd25519HostKey,
  publicKeyBlob,
  publicKeyLine,
  sshFingerprint,
} from "../identity/openssh-key.ts";
import { parseHostCertificate, type HostCertificate } from "../identity/ssh-certificate.ts";
import { withKbsAdmin, type AdminTarget } from "../provision/kbs-side.ts";
import { ADMIN_OPTIONS, adminTokenFromArgs } from "../provision/bind-plan.ts";
import { signHostCertificate } from "../provision/ssh-host-cert.ts";

const DEADLINE_MS = 120_000;
const COMMENT = /^[\x21-\x7e][\x20-\x7e]{0,255}$/;

export const sshIdentityCommand: Command = {
  name: "ssh-identity",
  usage:
    "ssh-identity --kbs URL --resource REPO/TYPE/TAG [--ca FILE]\n" +
    "     (--admin-key FILE | --admin-token-file FILE | --admin-anonymous)\n" +
    "     [--certificate-resource REPO/TYPE/TAG --ca-key FILE [--ca-key-in-agent] [--principal NAME]... [--validity SPEC] [--key-id ID]]\n" +
    "     [--comment TEXT]",
  description:
    "Generates an ed25519 SSH host key in memory, optionally has your CA sign a host certificate for it,\n" +
    "stores both at the KBS (trustee admin API) and prints the known_hosts / @cert-authority lines for users\n" +
    "and the identity.ssh configuration for the image. The private key never touches a file, argv or a log.",
  options: [
    { name: "kbs", kind: "string", value: "URL", help: "KBS URL of the admin API" },
    { name: "resource", kind: "string", value: "REPO/TYPE/TAG", help: "KBS resource for the host private key" },
    { name: "ca", kind: "string", value: "FILE", help: "PEM CA of the KBS certificate (default: system roots)" },
    ...ADMIN_OPTIONS,
    {
      name: "certificate-resource",
      kind: "string",
      value: "REPO/TYPE/TAG",
      help: "KBS resource for the host certificate (needs --ca-key)",
    },
    { name: "ca-key", kind: "string", value: "FILE", help: "your SSH CA's ed25519 private key (ssh-keygen -s)" },
    { name: "ca-key-in-agent", kind: "bool", help: "--ca-key is the CA's public key; ssh-agent signs (ssh-keygen -U)" },
    { name: "principal", kind: "list", value: "NAME", help: "host name or address the certificate is valid for" },
    { name: "validity", kind: "string", value: "SPEC", help: "certificate validity, ssh-keygen -V syntax (e.g. +52w)" },
    { name: "key-id", kind: "string", value: "ID", help: "certificate key id (default: the resource path)" },
    { name: "comment", kind: "string", value: "TEXT", help: 'comment of the host key (default "cvm-unlock")' },
    { name: "insecure-http", kind: "bool", help: "permit an http:// KBS URL (testing only; logged)" },
    { name: "ssh-keygen", kind: "string", value: "PATH", help: "ssh-keygen binary", hidden: true },
  ],
  async run(args, io) {
    if (args.positionals.length !== 0) throw new CvmError("usage", "ssh-identity takes no positional arguments");
    const plan = planFrom(args, io);
    const key = generateEd25519HostKey(plan.comment, (n) => crypto.randomFillSync(Buffer.alloc(n)));
    const deadline = new Deadline(DEADLINE_MS);
    let encoded: Buffer | undefined;
    try {
      const line = publicKeyLine(key.publicKey, key.comment);
      const cert = plan.cert ? certify(line, key.publicKey, plan.cert, args) : undefined;
      encoded = encodeOpensshPrivateKey(key);
      await upload(plan, encoded, cert, deadline, io);
      report(plan, key.publicKey, cert, io);
      return 0;
    } finally {
      encoded?.fill(0);
      key.dispose();
      deadline.dispose();
    }
  },
};

interface CertPlan {
  resource: string;
  caKey: string;
  principals: string[];
  validity: string | undefined;
  keyId: string;
}

interface SshIdentityPlan extends AdminTarget {
  resource: string;
  comment: string;
  cert: CertPlan | undefined;
}

function resourceArg(args: ParsedArgs, name: string): string | undefined {
  const r = optString(args, name);
  if (r !== undefined && !RESOURCE_PATH.test(r)) throw new CvmError("usage", `--${name} must be REPO/TYPE/TAG`);
  return r;
}

function planFrom(args: ParsedArgs, io: CommandIO): SshIdentityPlan {
  const url = optString(args, "kbs");
  if (url === undefined || !URL_PATTERN.test(url)) throw new CvmError("usage", "ssh-identity needs --kbs URL");
  const resource = resourceArg(args, "resource");
  if (resource === undefined) throw new CvmError("usage", "ssh-identity needs --resource REPO/TYPE/TAG");
  const given = ["admin-key", "admin-token-file"].filter((o) => optString(args, o) !== undefined).length;
  if (given + (optBool(args, "admin-anonymous") ? 1 : 0) !== 1)
    throw new CvmError("usage", "ssh-identity needs exactly one of --admin-key, --admin-token-file, --admin-anonymous");
  const comment = optString(args, "comment") ?? "cvm-unlock";
  if (!COMMENT.test(comment)) throw new CvmError("usage", "--comment must be printable ASCII (at most 256 characters)");
  const certResource = resourceArg(args, "certificate-resource");
  const caKey = optString(args, "ca-key");
  if ((certResource === undefined) !== (caKey === undefined))
    throw new CvmError("usage", "--certificate-resource and --ca-key go together");
  for (const o of ["principal", "validity", "key-id", "ca-key-in-agent"])
    if (certResource === undefined && (optList(args, o).length > 0 || optBool(args, o)))
      throw new CvmError("usage", `--${o} only goes with --certificate-resource and --ca-key`);
  if (certResource === resource) throw new CvmError("usage", "--certificate-resource must differ from --resource");
  const insecureHttp = optBool(args, "insecure-http");
  if (insecureHttp) io.log.warning("--insecure-http: the admin API may be reached over plain http:// (testing only)");
  const caFile = optString(args, "ca");
  const caPem = caFile !== undefined ? readCaFile(caFile, "--ca", "usage") : undefined;
  if (caPem === undefined && url.startsWith("https:"))
    io.log.warning(`no --ca: the KBS certificate of ${url} is checked against the system's public roots`);
  return {
    url,
    caPem,
    token: adminTokenFromArgs(args),
    insecureHttp,
    resource,
    comment,
    cert:
      certResource !== undefined
        ? {
            resource: certResource,
            caKey: caKey!,
            principals: optList(args, "principal"),
            validity: optString(args, "validity"),
            keyId: optString(args, "key-id") ?? resource,
          }
        : undefined,
  };
}

/** Sign with the owner's CA, then check the result the way the VM will (an ed25519 CA, our key, a host cert). */
function certify(line: string, publicKey: Uint8Array, c: CertPlan, args: ParsedArgs): HostCertificate {
  const text = signHostCertificate({
    publicKeyLine: line,
    caKey: c.caKey,
    keyId: c.keyId,
    principals: c.principals,
    validity: c.validity,
    useAgent: optBool(args, "ca-key-in-agent"),
    sshKeygen: optString(args, "ssh-keygen") ?? "ssh-keygen",
  });
  try {
    return parseHostCertificate(text, publicKey);
  } catch (e) {
    throw new CvmError("usage", `the VM would refuse this certificate: ${errorMessage(e)}`, {
      hint: "sign with an ed25519 CA key (ssh-keygen -t ed25519 -f ca)",
    });
  }
}

async function upload(
  plan: SshIdentityPlan,
  privateKey: Buffer,
  cert: HostCertificate | undefined,
  deadline: Deadline,
  io: CommandIO,
): Promise<void> {
  await withKbsAdmin(plan, deadline, async (admin) => {
    // The certificate first: a refused key upload then leaves no key without its certificate.
    if (cert && plan.cert) {
      await admin.putResource(plan.cert.resource, Buffer.from(cert.line));
      io.stdout.write(`${plan.url}: resource ${plan.cert.resource} stored (host certificate ${cert.keyId})\n`);
    }
    await admin.putResource(plan.resource, privateKey);
    io.stdout.write(`${plan.url}: resource ${plan.resource} stored (ed25519 host private key)\n`);
  });
  io.log.warning(
    `resource policy unchanged: the KBS's current (KBS-wide) policy decides whether ${plan.resource} is released; ` +
      "it must release it only to your attested VMs (cvm-unlock bind --policy sets it)",
  );
}

function report(plan: SshIdentityPlan, publicKey: Uint8Array, cert: HostCertificate | undefined, io: CommandIO): void {
  const pub = publicKeyLine(publicKey);
  const hosts = cert?.principals.length ? cert.principals.join(",") : "HOSTNAME";
  const ssh = {
    resource: plan.resource,
    ...(plan.cert ? { certificate_resource: plan.cert.resource } : {}),
    policy: "required",
  };
  const lines = [
    `host key: ${sshFingerprint(publicKeyBlob(publicKey))} (ED25519)`,
    "image config (/etc/cvm-unlock/config.json):",
    `  "identity": {"ssh": ${JSON.stringify(ssh)}}`,
    "users' ~/.ssh/known_hosts:",
    `  ${hosts} ${pub}`,
  ];
  if (cert)
    lines.push(
      `or, trusting every host your CA certifies (CA ${cert.caFingerprint}):`,
      `  @cert-authority ${cert.principals.length ? cert.principals.join(",") : "*"} ${cert.caKeyLine}`,
    );
  io.stdout.write(`${lines.join("\n")}\n`);
}
