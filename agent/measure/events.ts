// What cvm-unlock measures, as pure functions (docs/UNLOCK.md "Measurements"):
//   volume opened   event text  "cryptsetup:<dm name>:<LUKS UUID>"   (systemd's tpm2-measure-pcr string)
//   verity opened   event text  "verity:<dm name>:<root hash hex>"   (the hash the KBS released)
//   leaving initrd  event text  "cvm-unlock:leave-initrd"
//   failed          event text  "cvm-unlock:failed:<exit code>" (or ":unknown" when the code is lost)
// For each PCR bank the extended digest is H_bank(UTF-8 event text); for a TDX RTMR it is
// SHA-384(event text), 48 bytes. systemd HMACs its string with the volume key; we never hold the
// volume key (cryptsetup derives it), so our volume event is a plain hash of the identity.
// Every extend is also recorded as one CBOR item appended to the event record (a CBOR sequence,
// RFC 8742) so that a verifier can replay the register values.
import { sha384 } from "@noble/hashes/sha2.js";
import { concat, utf8 } from "../../platform/util/bytes.ts";
import { decodeCborSequenceUntrusted } from "../../platform/util/cbor.ts";
import { CvmError } from "../../platform/util/errors.ts";

export const LEAVE_INITRD_EVENT = "cvm-unlock:leave-initrd";
export const RECORD_VERSION = 1;
const FAILED_PREFIX = "cvm-unlock:failed:";

/**
 * The failure marker: extended before the failure policy (poweroff/emergency) runs, so that nothing
 * later in this boot can attest as a fresh initramfs. `undefined` when the exit code is not known
 * (the backstop unit found no report from the agent).
 */
export function failureEvent(exitCode: number | undefined): string {
  if (exitCode === undefined) return `${FAILED_PREFIX}unknown`;
  if (!Number.isInteger(exitCode) || exitCode < 1 || exitCode > 255)
    throw new CvmError("internal", `failure marker: exit code ${exitCode} is not 1..255`);
  return `${FAILED_PREFIX}${exitCode}`;
}

export function volumeEvent(dmName: string, luksUuid: string): string {
  // systemd escapes ':' in the name; our dm names cannot contain one (config pattern), so no escaping.
  if (dmName.includes(":")) throw new CvmError("internal", `dm name ${dmName} contains ':'`);
  return `cryptsetup:${dmName}:${luksUuid.toLowerCase()}`;
}

/** A dm-verity volume opened with the root hash the KBS released: "verity:<dm name>:<lowercase hex root hash>". */
export function verityEvent(dmName: string, rootHashHex: string): string {
  if (dmName.includes(":")) throw new CvmError("internal", `dm name ${dmName} contains ':'`);
  return `verity:${dmName}:${rootHashHex.toLowerCase()}`;
}

export function rtmrDigest(event: string): Uint8Array {
  return sha384(utf8(event));
}

/** One entry of the event record. Byte strings stay bytes (CBOR major type 2). */
export interface MeasurementRecord {
  v: number;
  /** "volume" | "leave-initrd" | "failure" */
  kind: string;
  event: string;
  /** Wall-clock seconds (informational only; not part of any digest). */
  time: number;
  pcr?: { index: number; digests: Record<string, Uint8Array> };
  rtmr?: { index: number; digest: Uint8Array };
  /** volume: how it was opened (opened, already-open, key-verified, opened-by-passphrase);
   * leave-initrd: "opened:<dm names>" or "none-opened" (docs/UNLOCK.md §6); failure: the error kind. */
  outcome?: string;
}

/** Replay: the register value after extending `digests` in order, from `initial` (zeros after reset). */
export function replayExtends(
  hash: (b: Uint8Array) => Uint8Array,
  initial: Uint8Array,
  digests: Uint8Array[],
): Uint8Array {
  let v = initial;
  for (const d of digests) v = hash(concat(v, d));
  return v;
}

const MAX_RECORD_FILE = 1024 * 1024;

/** Decode the event record (a CBOR sequence) for replay; bounded, and each item's shape checked. */
export function decodeRecords(bytes: Uint8Array): MeasurementRecord[] {
  const items = decodeCborSequenceUntrusted(bytes, "event record", MAX_RECORD_FILE);
  return items.map((it, i) => {
    const r = it as MeasurementRecord;
    if (
      typeof r !== "object" ||
      r === null ||
      r.v !== RECORD_VERSION ||
      typeof r.kind !== "string" ||
      typeof r.event !== "string"
    )
      throw new CvmError("evidence", `event record item ${i} is not a version ${RECORD_VERSION} measurement record`);
    const problem = registerProblem(r);
    if (problem) throw new CvmError("evidence", `event record item ${i} (${r.kind}): ${problem}`);
    return r;
  });
}

/** A verifier replays these digests: check their shape rather than trusting the file. */
function registerProblem(r: MeasurementRecord): string | undefined {
  const isIndex = (n: unknown) => Number.isInteger(n) && (n as number) >= 0 && (n as number) <= 23;
  if (r.pcr !== undefined) {
    if (typeof r.pcr !== "object" || r.pcr === null || !isIndex(r.pcr.index)) return "pcr.index is not a PCR number";
    const digests = Object.values(r.pcr.digests ?? {});
    if (digests.length === 0 || !digests.every((d) => d instanceof Uint8Array && d.length >= 20 && d.length <= 64))
      return "pcr.digests must map bank names to digests";
  }
  if (r.rtmr !== undefined) {
    if (typeof r.rtmr !== "object" || r.rtmr === null || !isIndex(r.rtmr.index))
      return "rtmr.index is not a register number";
    if (!(r.rtmr.digest instanceof Uint8Array) || r.rtmr.digest.length !== 48)
      return "rtmr.digest must be 48 bytes (SHA-384)";
  }
  return undefined;
}
