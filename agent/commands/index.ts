// The command registry: name and one-line summary here, the implementation loaded only when the
// command runs (a dynamic import keeps `version`/`--help` from evaluating undici, crypto, codecs).
import type { Command } from "../cli/command.ts";

export interface CommandEntry {
  name: string;
  summary: string;
  load(): Promise<Command>;
}

export const commands: CommandEntry[] = [
  {
    name: "detect",
    summary: "show which evidence sources exist and which one would be used",
    load: async () => (await import("./detect.ts")).detectCommand,
  },
  {
    name: "evidence",
    summary: "collect evidence for a nonce and print the trustee /attest body",
    load: async () => (await import("./evidence.ts")).evidenceCommand,
  },
  {
    name: "fetch",
    summary: "attest to the KBS and write the released secret to stdout or --out-fd",
    load: async () => (await import("./fetch.ts")).fetchCommand,
  },
  {
    name: "unlock",
    summary: "fetch the disk key(s) from the KBS and open the LUKS2 volume(s) with cryptsetup",
    load: async () => (await import("./unlock.ts")).unlockCommand,
  },
  {
    name: "inspect",
    summary: "decode an attestation report, quote, event log, certificate table or evidence JSON",
    load: async () => (await import("./inspect.ts")).inspectCommand,
  },
  {
    name: "config",
    summary: "show the merged configuration and where each value came from",
    load: async () => (await import("./config.ts")).configCommand,
  },
  {
    name: "bind",
    summary: "store KBS endpoints, resource and CA pin in a cvm-unlock LUKS2 token",
    load: async () => (await import("./bind.ts")).bindCommand,
  },
  {
    name: "ssh-identity",
    summary: "make an ed25519 SSH host key (and CA certificate) released only to attested VMs; store it at the KBS",
    load: async () => (await import("./ssh-identity.ts")).sshIdentityCommand,
  },
  {
    name: "reference",
    summary: "PCR 4/7/11/12 reference values for the next boot of a UKI (RVPS message or bind --pcr-values)",
    load: async () => (await import("./reference.ts")).referenceCommand,
  },
  {
    name: "measure",
    summary: "extend the leave-initrd marker into the PCR/RTMR (run at switch-root, always)",
    load: async () => (await import("./measure.ts")).measureCommand,
  },
  {
    name: "verify-root",
    summary: "check that the mounted root is the dm-crypt volume cvm-unlock opened",
    load: async () => (await import("./verify-root.ts")).verifyRootCommand,
  },
  {
    name: "verity",
    summary: "build a dm-verity hash tree (veritysetup format), sign its root hash, print the KBS resource",
    load: async () => (await import("./verity.ts")).verityCommand,
  },
  {
    name: "version",
    summary: "print version, git commit and runtime",
    load: async () => (await import("./version.ts")).versionCommand,
  },
];
