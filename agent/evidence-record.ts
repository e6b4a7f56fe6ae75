// `evidence --out FILE`: a compact, versioned CBOR record of one evidence collection, so that an
// operator can keep what a machine produced and decode or re-submit it later. It holds no secrets:
// the ephemeral private key never leaves WebCrypto.
import { decodeCborUntrusted, encodeCbor } from "../platform/util/cbor.ts";
import { CvmError } from "../platform/util/errors.ts";

export const EVIDENCE_RECORD_TYPE = "cvm-unlock/evidence";
export const EVIDENCE_RECORD_VERSION = 1;

export interface EvidenceRecord {
  type: typeof EVIDENCE_RECORD_TYPE;
  version: number;
  tee: string;
  /** The /attest body exactly as it would be sent, as JSON text (byte-exact for re-submission). */
  attestation: string;
  /** Runtime-data digest the evidence is bound to. */
  digest: Uint8Array;
  created: string;
}

export function encodeEvidenceRecord(r: Omit<EvidenceRecord, "type" | "version">): Uint8Array {
  return encodeCbor({ type: EVIDENCE_RECORD_TYPE, version: EVIDENCE_RECORD_VERSION, ...r });
}

export function decodeEvidenceRecord(bytes: Uint8Array): EvidenceRecord {
  const m = decodeCborUntrusted(bytes, "evidence record", 8 * 1024 * 1024);
  if (!(m instanceof Map)) throw new CvmError("evidence", "evidence record: top level is not a CBOR map");
  const get = (k: string) => m.get(k);
  if (get("type") !== EVIDENCE_RECORD_TYPE) throw new CvmError("evidence", "evidence record: wrong type marker");
  if (get("version") !== EVIDENCE_RECORD_VERSION)
    throw new CvmError("evidence", `evidence record: unsupported version ${String(get("version"))}`);
  const tee = get("tee"),
    attestation = get("attestation"),
    digest = get("digest"),
    created = get("created");
  if (
    typeof tee !== "string" ||
    typeof attestation !== "string" ||
    !(digest instanceof Uint8Array) ||
    typeof created !== "string"
  )
    throw new CvmError("evidence", "evidence record: missing or mistyped field (tee, attestation, digest, created)");
  return { type: EVIDENCE_RECORD_TYPE, version: EVIDENCE_RECORD_VERSION, tee, attestation, digest, created };
}
