// `cvm-unlock reference --uki NEXT.efi`: the PCR 4/7/11/12 values the next boot of a UKI will show,
// united with the current ones, as a trustee RVPS `sample` message (POST /kbs/v0/reference-value)
// or as `bind --pcr-values` JSON. Runs on the owner's machine with the image files.
import { b64 } from "../../platform/util/bytes.ts";
import { CvmError } from "../../platform/util/errors.ts";
import { readOptionFile } from "../cli/option-file.ts";
import { optList, optString } from "../cli/args.ts";
import type { Command } from "../cli/command.ts";
import { nextBootReferences } from "../reference/next-boot.ts";

const MAX_FILE_BYTES = 512 * 1024 * 1024;
const PHASE = /^[a-z0-9-]{1,64}$/;

function readFile(file: string, option: string): Uint8Array {
  return new Uint8Array(readOptionFile(file, MAX_FILE_BYTES, option));
}

export const referenceCommand: Command = {
  name: "reference",
  usage:
    "reference --uki NEXT.efi [--current-uki CURRENT.efi [--event-log FILE]] [--phase NAME]... [--format rvps|pcr-values]",
  description:
    "PCR 11 from the UKI's sections as systemd-stub measures them plus the systemd-pcrphase phases (default\n" +
    "enter-initrd: what cvm-unlock sees), and PCR 12 (nothing from outside the UKI: zero); with --event-log\n" +
    "(binary_bios_measurements of a boot of --current-uki) also PCR 4 and 7, and PCR 12 as that boot left it.\n" +
    "Current and next values are united, so a rollout never locks out VMs still on the old image.",
  options: [
    { name: "uki", kind: "string", value: "FILE", help: "the UKI the next boot will run" },
    { name: "current-uki", kind: "string", value: "FILE", help: "the UKI running now (its values stay accepted)" },
    {
      name: "event-log",
      kind: "string",
      value: "FILE",
      help: "TCG event log of a boot of --current-uki (adds PCR 4 and 7; PCR 12 as replayed)",
    },
    {
      name: "phase",
      kind: "list",
      value: "NAME",
      help: "systemd-pcrphase phase strings extended after the stub (default enter-initrd)",
    },
    {
      name: "format",
      kind: "string",
      value: "rvps|pcr-values",
      help: "RVPS sample message (default) or bind --pcr-values JSON",
    },
  ],
  async run(args, io) {
    const next = optString(args, "uki");
    if (next === undefined) throw new CvmError("usage", "reference needs --uki FILE");
    const format = optString(args, "format") ?? "rvps";
    if (format !== "rvps" && format !== "pcr-values")
      throw new CvmError("usage", "--format must be rvps or pcr-values");
    const phases = optList(args, "phase");
    for (const p of phases)
      if (!PHASE.test(p)) throw new CvmError("usage", `--phase ${JSON.stringify(p)}: lower-case words and dashes`);
    const current = optString(args, "current-uki");
    const log = optString(args, "event-log");
    const values = nextBootReferences({
      nextUki: readFile(next, "--uki"),
      ...(current !== undefined ? { currentUki: readFile(current, "--current-uki") } : {}),
      ...(log !== undefined ? { eventLog: readFile(log, "--event-log") } : {}),
      phases: phases.length > 0 ? phases : ["enter-initrd"],
    });
    const named = (prefix: string) =>
      Object.fromEntries(
        [...values].sort(([a], [b]) => a - b).map(([pcr, v]) => [`${prefix}${String(pcr).padStart(2, "0")}`, v]),
      );
    if (format === "pcr-values") io.stdout.write(`${JSON.stringify(named("pcr"), null, 2)}\n`);
    else {
      // trustee's sample extractor: payload = STANDARD base64 of {"name": [values]}; its default
      // TPM policy reads "tpm_pcr11" (attestation-service ear_default_policy_cpu.rego).
      const payload = b64(new TextEncoder().encode(JSON.stringify(named("tpm_pcr"))));
      io.stdout.write(`${JSON.stringify({ version: "0.1.0", type: "sample", payload })}\n`);
    }
    return 0;
  },
};
