// `cvm-unlock inspect FILE`: decode an SNP report, TDX quote/TDREPORT, TCG event log, CCEL (log
// area or ACPI table), SNP certificate table, Azure HCL report or trustee evidence JSON, for people or as JSON.
// Reads only the named file (or stdin for "-"), bounded; never touches devices or the network.
import { optBool, optString } from "../cli/args.ts";
import type { Command } from "../cli/command.ts";
import { CvmError } from "../../platform/util/errors.ts";
import { readFdBounded, readFileBounded } from "../../platform/util/files.ts";
import {
  INSPECT_TYPES,
  inspectBytes,
  renderJson,
  renderText,
  resolveInput,
  trusteeEvidence,
} from "../inspect/index.ts";

/** Larger than any artefact we decode (a 1 MiB CCEL area is the biggest real one). */
const MAX_INPUT = 32 * 1024 * 1024;

function readInput(file: string): Uint8Array {
  const limit = { what: "the input", max: MAX_INPUT, kind: "usage" } as const;
  // stdin may be a pipe; a named file may be a FIFO or process substitution (<(...)), so no regular-file check.
  return file === "-" ? readFdBounded(0, "standard input", limit) : readFileBounded(file, limit);
}

export const inspectCommand: Command = {
  name: "inspect",
  usage: "inspect [options] FILE",
  description: [
    "Decodes FILE (or - for stdin) and prints it for people: measurements, TCB, policy, report data,",
    "RTMR/PCR replay of event logs, signatures that can be checked offline. The type is detected from",
    `the bytes (raw, or hex/base64 text) unless --type is given (${INSPECT_TYPES.join(", ")}).`,
    "evidence-json is trustee tdx/snp primary_evidence or an /attest body: for TDX the event log is",
    "replayed against the quote's RTMRs the way trustee does.",
    "Malformed input is reported with the structure, field and byte offset (exit code 5).",
  ].join("\n"),
  options: [
    { name: "type", kind: "string", value: "TYPE", help: `input type: ${INSPECT_TYPES.join("|")} (default: detect)` },
    { name: "json", kind: "bool", help: "print JSON instead of text" },
    { name: "trustee", kind: "bool", help: "print trustee's primary_evidence JSON for an SNP report or TDX quote" },
  ],
  async run(args, io) {
    if (args.positionals.length !== 1) throw new CvmError("usage", "inspect needs exactly one FILE (or - for stdin)");
    const file = args.positionals[0]!;
    const bytes = readInput(file);
    if (bytes.length === 0) throw new CvmError("evidence", `${file} is empty`);
    const input = resolveInput(bytes, optString(args, "type"));
    if (input.encoding) io.log.info(`input is ${input.encoding} text; decoded ${input.bytes.length} bytes`);
    if (optBool(args, "trustee")) {
      io.stdout.write(trusteeEvidence(input.bytes, input.type));
      return 0;
    }
    const result = inspectBytes(input.bytes, input.type);
    io.stdout.write(optBool(args, "json") ? renderJson(result) : renderText(result));
    return 0;
  },
};
