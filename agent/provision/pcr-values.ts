// Reference PCR values for the tpm-pcrs policy template, from a file the owner made on a trusted
// machine: either JSON {"pcr07": "hex" | ["hex", ...], ...} (several values = any of them, e.g. the
// current and the next image), or the binary TCG event log of a VM running the image
// (/sys/kernel/security/tpm0/binary_bios_measurements), replayed into the SHA-256 bank. A PCR the
// log never extends keeps its reset value (zeros).
import { readOptionFile } from "../cli/option-file.ts";
import { TPM_ALG_SHA256 } from "../../platform/eventlog/algorithms.ts";
import { parseEventLog } from "../../platform/eventlog/parse.ts";
import { replay } from "../../platform/eventlog/replay.ts";
import { hex } from "../../platform/util/bytes.ts";
import { CvmError, errorMessage } from "../../platform/util/errors.ts";
import type { PcrValues } from "./policy-template.ts";

const MAX_FILE_BYTES = 4 * 1024 * 1024;
const SHA256_HEX = /^[0-9a-fA-F]{64}$/;

export function readPcrValues(file: string): PcrValues {
  const bytes = readOptionFile(file, MAX_FILE_BYTES, "--pcr-values");
  return bytes[0] === 0x7b /* { */ ? fromJson(bytes, file) : fromEventLog(bytes, file);
}

function fromJson(bytes: Buffer, file: string): PcrValues {
  let doc: unknown;
  try {
    doc = JSON.parse(bytes.toString("utf8"));
  } catch (e) {
    throw new CvmError("usage", `--pcr-values ${file}: not JSON: ${errorMessage(e)}`);
  }
  const out: PcrValues = new Map();
  for (const [k, v] of Object.entries(doc as Record<string, unknown>)) {
    const m = /^pcr(\d{2})$/.exec(k);
    const list = typeof v === "string" ? [v] : v;
    if (
      !m ||
      Number(m[1]) > 23 ||
      !Array.isArray(list) ||
      !list.every((x) => typeof x === "string" && SHA256_HEX.test(x))
    )
      throw new CvmError(
        "usage",
        `--pcr-values ${file}: member ${JSON.stringify(k)} must be pcr00..pcr23 with a SHA-256 hex value or a list of them`,
      );
    out.set(
      Number(m[1]),
      (list as string[]).map((x) => x.toLowerCase()),
    );
  }
  return out;
}

function fromEventLog(bytes: Buffer, file: string): PcrValues {
  let regs;
  try {
    regs = replay(parseEventLog(new Uint8Array(bytes)), { kind: "pcr" });
  } catch (e) {
    throw new CvmError("usage", `--pcr-values ${file}: neither JSON nor a TCG event log: ${errorMessage(e)}`);
  }
  const out: PcrValues = new Map();
  for (let pcr = 0; pcr <= 23; pcr++) {
    const v = regs.get(pcr)?.get(TPM_ALG_SHA256);
    out.set(pcr, [v ? hex(v) : "0".repeat(64)]);
  }
  return out;
}
