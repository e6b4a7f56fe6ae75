// `cvm-unlock inspect FILE`: decode an SNP report, TDX quote/TDREPORT, TCG event log, CCEL (log
// area or ACPI table), SNP certificate table, Azure HCL report or trustee evidence JSON, for people or as JSON.
// Reads only the named file (or stdin for "-"), bounded; never touches devices or the network.
import * as fs from "node:fs";
import { optBool, optString } from "../cli/args.ts";
import type { Command } from "../cli/command.ts";
import { CvmError } from "../../platform/util/errors.ts";
import { inspectBytes, resolveInput, trusteeEvidence } from "../inspect/index.ts";
import { INSPECT_TYPES } from "../inspect/model.ts";
import { renderJson, renderText } from "../inspect/render.ts";

/** Larger than any artefact we decode (a 1 MiB CCEL area is the biggest real one). */
const MAX_INPUT = 32 * 1024 * 1024;

function readInput(file: string): Uint8Array {
  const fd = file === "-" ? 0 : openOrExplain(file);
  try {
    const chunks: Buffer[] = [];
    let total = 0;
    const buf = Buffer.alloc(1024 * 1024);
    for (;;) {
      const n = fs.readSync(fd, buf, 0, buf.length, null);
      if (n === 0) break;
      total += n;
      if (total > MAX_INPUT)
        throw new CvmError("usage", `${file} is larger than ${MAX_INPUT} bytes; that is not an attestation artefact`);
      chunks.push(Buffer.from(buf.subarray(0, n)));
    }
    return new Uint8Array(Buffer.concat(chunks, total));
  } finally {
    if (fd !== 0) fs.closeSync(fd);
  }
}

function openOrExplain(file: string): number {
  try {
    if (fs.statSync(file).isDirectory()) throw new CvmError("usage", `${file} is a directory`);
    return fs.openSync(file, "r");
  } catch (e) {
    if (e instanceof CvmError) throw e;
    throw new CvmError("usage", `cannot read ${file}: ${(e as Error).message}`);
  }
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
