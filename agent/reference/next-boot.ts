// Reference values for the next boot of a UKI: the PCRs a tpm-pcrs policy (or trustee's default
// EAR policy, `tpm_pcr11`) compares, for the image running now AND the one being rolled out, so
// VMs on either pass (RVPS `register` replaces a name's whole list, so both go in one message).
//
// PCR 4: replay the current boot's event log with the digests of the current UKI (and of the
// kernel PE inside its .linux section, which systemd-stub hands to LoadImage) replaced by the next
// one's Authenticode hashes. PCR 7 (Secure Boot policy and the certificates that verified the
// images) stays as replayed: the next UKI must be signed by the same key. PCR 11: the UKI's
// sections as systemd-stub measures them plus the pcrphase phases (uki.ts). PCR 12: what
// systemd-stub measured from outside the UKI (a command line the boot loader passed instead of
// .cmdline, credentials); pinning it is what makes a tpm-pcrs policy cover the command line
// (bind requires 8 or 12). It stays as replayed; without a log, a UKI booted with nothing from
// outside leaves it at zero.
import { sha256 } from "@noble/hashes/sha2.js";
import { hex, utf8 } from "../../platform/util/bytes.ts";
import { CvmError } from "../../platform/util/errors.ts";
import { TPM_ALG_SHA256 } from "../../platform/eventlog/algorithms.ts";
import { EV_NO_ACTION } from "../../platform/eventlog/event-types.ts";
import { parseEventLog, type EventLog } from "../../platform/eventlog/parse.ts";
import { replay } from "../../platform/eventlog/replay.ts";
import { authenticodeSha256, parsePe, sectionData } from "./pe.ts";
import { extend, ukiPcr11 } from "./uki.ts";

export const REFERENCE_PCRS = [4, 7, 11, 12];

export interface ReferenceInput {
  nextUki: Uint8Array;
  currentUki?: Uint8Array;
  /** Binary TCG event log of a boot of currentUki. */
  eventLog?: Uint8Array;
  phases: string[];
}

/** pcr -> accepted values (current first, then next; deduplicated). */
export type ReferenceValues = Map<number, string[]>;

/** Authenticode hashes firmware logs for a UKI: the UKI itself and the kernel PE in .linux. */
function imageHashes(uki: Uint8Array): string[] {
  const img = parsePe(uki);
  const out = [hex(authenticodeSha256(img))];
  const linux = img.sections.find((s) => s.name === ".linux");
  if (linux) {
    try {
      out.push(hex(authenticodeSha256(parsePe(sectionData(img, linux)))));
    } catch {
      /* a .linux that is not a PE image is not loaded through LoadImage */
    }
  }
  return out;
}

function replayPcr4(log: EventLog, replace: Map<string, string>): { value: string; replaced: number } {
  let pcr: Uint8Array = new Uint8Array(32);
  let replaced = 0;
  for (const e of log.events) {
    if (e.index !== 4 || e.type === EV_NO_ACTION) continue;
    const d = e.digests.get(TPM_ALG_SHA256);
    if (!d) throw new CvmError("usage", "the event log has no SHA-256 digests for PCR 4");
    const swap = replace.get(hex(d));
    if (swap !== undefined) replaced++;
    pcr = extend(pcr, swap !== undefined ? Buffer.from(swap, "hex") : d);
  }
  return { value: hex(pcr), replaced };
}

export function nextBootReferences(input: ReferenceInput): ReferenceValues {
  const out: ReferenceValues = new Map();
  const add = (pcr: number, v: string) => {
    const list = out.get(pcr) ?? [];
    if (!list.includes(v)) list.push(v);
    out.set(pcr, list);
  };
  if (input.eventLog) {
    if (!input.currentUki)
      throw new CvmError(
        "usage",
        "--event-log needs --current-uki: the UKI that boot ran, to find and replace its PCR 4 events",
      );
    const log = parseEventLog(input.eventLog);
    const regs = replay(log, { kind: "pcr" });
    const cur = (pcr: number) => hex(regs.get(pcr)?.get(TPM_ALG_SHA256) ?? new Uint8Array(32));
    add(4, cur(4));
    add(7, cur(7));
    // The log holds systemd-stub's PCR 11 events, not systemd-pcrphase's: add the phases.
    let pcr11 = regs.get(11)?.get(TPM_ALG_SHA256) ?? new Uint8Array(32);
    for (const p of input.phases) pcr11 = extend(pcr11, Buffer.from(sha256hex(p), "hex"));
    add(11, hex(pcr11));
    const from = imageHashes(input.currentUki);
    const to = imageHashes(input.nextUki);
    const next4 = replayPcr4(log, new Map(from.map((h, i) => [h, to[i] ?? h])));
    if (next4.replaced === 0)
      throw new CvmError(
        "usage",
        "no PCR 4 event of the event log is the --current-uki (was the log taken on a boot of that UKI?)",
      );
    add(4, next4.value);
    add(7, cur(7));
    add(12, cur(12));
  } else {
    if (input.currentUki) add(11, hex(ukiPcr11(input.currentUki, input.phases)));
    add(12, hex(new Uint8Array(32)));
  }
  add(11, hex(ukiPcr11(input.nextUki, input.phases)));
  return out;
}

function sha256hex(s: string): string {
  return hex(sha256(utf8(s)));
}
