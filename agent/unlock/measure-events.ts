// What cvm-unlock measures, as pure functions (docs/UNLOCK.md "Measurements"):
//   volume opened   event text  "cryptsetup:<dm name>:<LUKS UUID>"   (systemd's tpm2-measure-pcr string)
//   leaving initrd  event text  "cvm-unlock:leave-initrd"
// For each PCR bank the extended digest is H_bank(UTF-8 event text); for a TDX RTMR it is
// SHA-384(event text), 48 bytes. systemd HMACs its string with the volume key; we never hold the
// volume key (cryptsetup derives it), so our volume event is a plain hash of the identity.
// Every extend is also recorded as one CBOR item appended to the event record (a CBOR sequence,
// RFC 8742) so that a verifier can replay the register values.
import { sha384 } from "@noble/hashes/sha2.js";
import { concat, utf8 } from "../../platform/util/bytes.ts";
import { CvmError } from "../../platform/util/errors.ts";

export const LEAVE_INITRD_EVENT = "cvm-unlock:leave-initrd";
export const RECORD_VERSION = 1;

export function volumeEvent(dmName: string, luksUuid: string): string {
  // systemd escapes ':' in the name; our dm names cannot contain one (config pattern), so no escaping.
  if (dmName.includes(":")) throw new CvmError("internal", `dm name ${dmName} contains ':'`);
  return `cryptsetup:${dmName}:${luksUuid.toLowerCase()}`;
}

export function rtmrDigest(event: string): Uint8Array {
  return sha384(utf8(event));
}

/** One entry of the event record. Byte strings stay bytes (CBOR major type 2). */
export interface MeasurementRecord {
  v: number;
  /** "volume" | "leave-initrd" */
  kind: string;
  event: string;
  /** Wall-clock seconds (informational only; not part of any digest). */
  time: number;
  pcr?: { index: number; digests: Record<string, Uint8Array> };
  rtmr?: { index: number; digest: Uint8Array };
  /** For leave-initrd: what the unlock run reported ("unlocked", "failed", "skipped", ...). */
  outcome?: string;
}

/** Replay: the register value after extending `digests` in order, from `initial` (zeros after reset). */
export function replayExtends(hash: (b: Uint8Array) => Uint8Array, initial: Uint8Array, digests: Uint8Array[]): Uint8Array {
  let v = initial;
  for (const d of digests) v = hash(concat(v, d));
  return v;
}
