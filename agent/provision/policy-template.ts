// Resource policies from templates (`bind --policy ...`). trustee evaluates `data.policy.allow`
// with the verified attestation token (EAR) as `input` and {"plugin", "resource-path"} as `data`;
// the claims a template reads are the ones trustee's verifiers put under
// input.submods.cpu0["ear.veraison.annotated-evidence"]: `tpm.pcrNN` (hex), `snp.measurement`,
// `snp.policy_debug_allowed`, and `init_data` (hex digest of the init-data the guest sent).
//
// The kernel command line is host-written on non-UKI boots and can open a shell (docs/SECURITY.md),
// so a template set must pin a measurement that covers it: a TPM PCR that holds the command line
// (8 with GRUB, 12 with systemd-stub) or the SNP launch measurement (with kernel-hashes=on).
// The policy is KBS-wide (trustee keeps one resource policy); the rule names the one resource.
import { CvmError } from "../../platform/util/errors.ts";

export type PolicyTemplate =
  | { kind: "tpm-pcrs"; pcrs: number[] }
  | { kind: "init-data"; digest: string }
  | { kind: "snp-measurement"; measurement: string };

/** PCRs that carry the kernel command line: 8 (GRUB), 12 (systemd-stub). */
export const CMDLINE_PCRS = [8, 12];
const EVIDENCE = `input.submods.cpu0["ear.veraison.annotated-evidence"]`;

export function parsePolicyTemplate(arg: string): PolicyTemplate {
  const eq = arg.indexOf("=");
  const name = eq === -1 ? arg : arg.slice(0, eq);
  const value = eq === -1 ? "" : arg.slice(eq + 1).toLowerCase();
  switch (name) {
    case "tpm-pcrs": {
      const pcrs = value.split(",").map((s) => (/^\d{1,2}$/.test(s) ? Number(s) : NaN));
      if (pcrs.length === 0 || pcrs.some((n) => !(n >= 0 && n <= 23)) || new Set(pcrs).size !== pcrs.length)
        throw new CvmError("usage", `--policy tpm-pcrs=${value}: expected distinct PCR numbers 0-23, e.g. 0,4,7,11,12`);
      return { kind: "tpm-pcrs", pcrs: pcrs.sort((a, b) => a - b) };
    }
    case "init-data":
      if (!/^(?:[0-9a-f]{64}|[0-9a-f]{96}|[0-9a-f]{128})$/.test(value))
        throw new CvmError(
          "usage",
          "--policy init-data=HEX: expected the SHA-256/384/512 digest of the init-data (hex)",
        );
      return { kind: "init-data", digest: value };
    case "snp-measurement":
      if (!/^[0-9a-f]{96}$/.test(value))
        throw new CvmError(
          "usage",
          "--policy snp-measurement=HEX: expected the 48-byte launch measurement (96 hex digits)",
        );
      return { kind: "snp-measurement", measurement: value };
    default:
      throw new CvmError(
        "usage",
        `--policy ${JSON.stringify(name)}: expected tpm-pcrs=LIST, init-data=HEX or snp-measurement=HEX`,
      );
  }
}

/** Accepted values per PCR (hex, lowercase), e.g. current and next image during a rollout. */
export type PcrValues = Map<number, string[]>;

export function buildResourcePolicy(resource: string, templates: PolicyTemplate[], pcrValues?: PcrValues): string {
  if (templates.length === 0) throw new CvmError("usage", "no policy template given");
  const coversCmdline = templates.some(
    (t) => t.kind === "snp-measurement" || (t.kind === "tpm-pcrs" && t.pcrs.some((p) => CMDLINE_PCRS.includes(p))),
  );
  if (!coversCmdline)
    throw new CvmError("usage", "the policy templates do not cover the kernel command line, which the host can edit", {
      hint: `include a command-line PCR in tpm-pcrs (${CMDLINE_PCRS.join(" with GRUB, ")} with systemd-stub) or snp-measurement (QEMU kernel-hashes=on), or write the policy yourself (--resource-policy FILE)`,
    });
  const lines: string[] = [];
  for (const t of templates) {
    if (t.kind === "snp-measurement") {
      lines.push(`${EVIDENCE}.snp.measurement == "${t.measurement}"`);
      lines.push(`${EVIDENCE}.snp.policy_debug_allowed == false`);
    } else if (t.kind === "init-data") lines.push(`${EVIDENCE}.init_data == "${t.digest}"`);
    else
      for (const pcr of t.pcrs) {
        const values = pcrValues?.get(pcr);
        if (!values || values.length === 0)
          throw new CvmError("usage", `--policy tpm-pcrs: no reference value for PCR ${pcr}`, {
            hint: "give --pcr-values FILE (a reference JSON or the TCG event log of a VM running the image)",
          });
        const name = `pcr${String(pcr).padStart(2, "0")}`;
        lines.push(`${EVIDENCE}.tpm.${name} in {${[...new Set(values)].map((v) => `"${v}"`).join(", ")}}`);
      }
  }
  const [repo, type, tag] = resource.split("/");
  return [
    "package policy",
    "import rego.v1",
    "",
    `# Written by cvm-unlock bind: release ${resource} only to a VM with these measurements.`,
    "# trustee keeps ONE resource policy for the whole KBS: merge rules for other resources by hand.",
    "default allow := false",
    "",
    "allow if {",
    `\tdata.plugin == "resource"`,
    `\tdata["resource-path"] == ["${repo}", "${type}", "${tag}"]`,
    ...lines.map((l) => `\t${l}`),
    "}",
    "",
  ].join("\n");
}
