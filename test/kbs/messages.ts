// The RCAR JSON messages, parsed the way trustee's serde types accept them (docs/spec/kbs-protocol.md §1.2,
// §1.3, §3.1): required members must be present with the right JSON type, unknown members are
// ignored, and the tee-pubkey is re-serialized from its typed members only.

/** kbs-types `Tee` serde names (§1.8). The Azure ones depend on the trustee version. */
export const MODERN_TEES = [
  "az-snp-vtpm",
  "az-tdx-vtpm",
  "nvidia",
  "sgx",
  "snp",
  "tdx",
  "cca",
  "csv",
  "se",
  "hygondcu",
  "tpm",
  "sample",
  "sampledevice",
  "nvidia-dpu",
] as const;
export const LEGACY_AZURE_TEES = ["azsnpvtpm", "aztdxvtpm"] as const;

export function knownTees(legacyAzureNames: boolean): readonly string[] {
  return legacyAzureNames ? [...MODERN_TEES.filter((t) => !t.startsWith("az-")), ...LEGACY_AZURE_TEES] : MODERN_TEES;
}

export class MessageError extends Error {
  override name = "MessageError";
}

type Json = Record<string, unknown>;

function object(v: unknown, what: string): Json {
  if (v === null || typeof v !== "object" || Array.isArray(v))
    throw new MessageError(`${what}: expected a JSON object`);
  return v as Json;
}

function requiredString(o: Json, key: string, what: string): string {
  if (!(key in o)) throw new MessageError(`${what}: missing field \`${key}\``);
  const v = o[key];
  if (typeof v !== "string") throw new MessageError(`${what}: field \`${key}\` must be a string`);
  return v;
}

export function parseJson(body: Uint8Array, what: string): unknown {
  try {
    return JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(body));
  } catch (e) {
    throw new MessageError(`${what}: not JSON: ${(e as Error).message}`);
  }
}

export interface AuthRequest {
  version: string;
  tee: string;
  extraParams: unknown;
}

export function parseAuthRequest(body: Uint8Array, tees: readonly string[]): AuthRequest {
  const o = object(parseJson(body, "Request"), "Request");
  const version = requiredString(o, "version", "Request");
  const tee = requiredString(o, "tee", "Request");
  if (!tees.includes(tee)) throw new MessageError(`Request: unknown variant \`${tee}\` for field \`tee\``);
  // serde_json::Value without a default: present is enough, any JSON value (even null) is accepted.
  if (!("extra-params" in o)) throw new MessageError("Request: missing field `extra-params`");
  return { version, tee, extraParams: o["extra-params"] };
}

/** semver `=0.4.0`: exact major.minor.patch, no pre-release; build metadata is ignored. */
export type VersionCheck = { ok: true } | { ok: false; parseError: boolean };

const SEMVER =
  /^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(?:-([0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*))?(?:\+([0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*))?$/;

export function checkProtocolVersion(version: string): VersionCheck {
  const m = SEMVER.exec(version);
  if (!m) return { ok: false, parseError: true };
  const exact = m[1] === "0" && m[2] === "4" && m[3] === "0" && m[4] === undefined;
  return exact ? { ok: true } : { ok: false, parseError: false };
}

/** kbs-types TeePubKey, internally tagged by `kty`; only these members survive re-serialization. */
export type TeePubKey =
  | { kty: "EC"; crv: string; alg: string; x: string; y: string }
  | { kty: "RSA"; alg: string; n: string; e: string }
  | { kty: "AKP"; alg: string; pub: string };

export function parseTeePubKey(v: unknown): TeePubKey {
  const o = object(v, "tee-pubkey");
  const kty = requiredString(o, "kty", "tee-pubkey");
  const s = (k: string) => requiredString(o, k, "tee-pubkey");
  switch (kty) {
    case "EC":
      return { kty, crv: s("crv"), alg: s("alg"), x: s("x"), y: s("y") };
    case "RSA":
      return { kty, alg: s("alg"), n: s("n"), e: s("e") };
    case "AKP":
      return { kty, alg: s("alg"), pub: s("pub") };
    default:
      throw new MessageError(`tee-pubkey: unknown variant \`${kty}\` for tag \`kty\``);
  }
}

export interface InitData {
  format: string;
  body: string;
}

export interface AttestationMessage {
  initData: InitData | null;
  nonce: string;
  teePubkey: TeePubKey;
  primaryEvidence: unknown;
  additionalEvidence: string;
}

export function parseAttestation(body: Uint8Array): AttestationMessage {
  const o = object(parseJson(body, "Attestation"), "Attestation");
  let initData: InitData | null = null;
  if (o["init-data"] !== undefined && o["init-data"] !== null) {
    const i = object(o["init-data"], "init-data");
    initData = { format: requiredString(i, "format", "init-data"), body: requiredString(i, "body", "init-data") };
  }
  if (!("runtime-data" in o)) throw new MessageError("Attestation: missing field `runtime-data`");
  const rd = object(o["runtime-data"], "runtime-data");
  const nonce = requiredString(rd, "nonce", "runtime-data");
  if (!("tee-pubkey" in rd)) throw new MessageError("runtime-data: missing field `tee-pubkey`");
  const teePubkey = parseTeePubKey(rd["tee-pubkey"]);
  if (!("tee-evidence" in o)) throw new MessageError("Attestation: missing field `tee-evidence`");
  const te = object(o["tee-evidence"], "tee-evidence");
  if (!("primary_evidence" in te)) throw new MessageError("tee-evidence: missing field `primary_evidence`");
  const additionalEvidence = requiredString(te, "additional_evidence", "tee-evidence");
  return { initData, nonce, teePubkey, primaryEvidence: te["primary_evidence"], additionalEvidence };
}
