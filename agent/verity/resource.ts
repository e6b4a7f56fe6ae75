// The verity resource the KBS releases (docs/VERITY.md):
//   {"v":1,"volumes":[{"name":"root","roothash":"<hex>","hash_alg":"sha256",
//     "data":"PARTLABEL=…"|"PARTUUID=…" (absent: Discoverable Partitions, derived from the hash),
//     "hash":…, "options":["panic-on-corruption", "data-block-size=4096", …],
//     "signature_p7s_b64":"<base64 DER PKCS#7 over the ASCII hex root hash>"}]}
// Strict: unknown keys, unknown options and the options that weaken dm-verity (ignore-corruption,
// ignore-zero-blocks, check-at-most-once) are refused, every size is bounded, errors name the field.
import { CvmError } from "../../platform/util/errors.ts";
import { DM_NAME_PATTERN } from "../config/unlock-schema.ts";
import { MAX_SIGNATURE_DER } from "./pkcs7.ts";

export const VERITY_RESOURCE_VERSION = 1;
export const MAX_VERITY_RESOURCE_BYTES = 64 * 1024;
const MAX_VOLUMES = 4;
const MAX_OPTIONS = 16;

export const HASH_HEX_CHARS = { sha256: 64, sha384: 96, sha512: 128 } as const;
export type VerityHashAlg = keyof typeof HASH_HEX_CHARS;

/** Where a device is: by GPT partition label or unique GUID, or derived from the root hash (DPS). */
export type DeviceRef = { partlabel: string } | { partuuid: string } | { derived: "data" | "hash" };

export interface VerityOptions {
  /** What a corrupted block does: EIO to the reader (dm-verity's default), panic or restart. */
  corruption: "eio" | "panic" | "restart";
  dataBlockSize?: number;
  hashBlockSize?: number;
  dataBlocks?: number;
  hashOffset?: number;
  /** Lowercase hex, or "-" for none. */
  salt?: string;
  format?: 0 | 1;
  /** false: no verity superblock on the hash device (all format parameters come from here). */
  superblock: boolean;
  uuid?: string;
}

export interface VerityVolume {
  name: string;
  /** Lowercase hex. */
  roothash: string;
  hashAlg: VerityHashAlg;
  data: DeviceRef;
  hash: DeviceRef;
  options: VerityOptions;
  signature?: Uint8Array;
}

/** Options dm-verity offers that would let corrupted or replayed blocks through. */
const WEAKENING = ["ignore-corruption", "ignore-zero-blocks", "check-at-most-once"];
const UUID_RE = /^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$/;
const PARTLABEL_RE = /^[^\u0000-\u001f/]{1,36}$/;

function bad(field: string, problem: string): never {
  throw new CvmError("volume", `verity resource: ${field}: ${problem}`, {
    hint: "produce the resource with `cvm-unlock verity format` (docs/VERITY.md)",
  });
}

function blockSize(field: string, v: string): number {
  const n = Number(v);
  if (!/^\d{3,5}$/.test(v) || n < 512 || n > 4096 || (n & (n - 1)) !== 0)
    bad(field, `${JSON.stringify(v)} is not a power of two from 512 to 4096`);
  return n;
}

function count(field: string, v: string, multipleOf = 1): number {
  const n = Number(v);
  if (!/^\d{1,16}$/.test(v) || !Number.isSafeInteger(n) || n % multipleOf !== 0)
    bad(field, `${JSON.stringify(v)} is not a whole number${multipleOf > 1 ? ` (multiple of ${multipleOf})` : ""}`);
  return n;
}

/** veritytab(5)-style options, each allowed once. */
export function parseVerityOptions(list: unknown, field: string): VerityOptions {
  if (list === undefined) return { corruption: "eio", superblock: true };
  if (!Array.isArray(list) || list.length > MAX_OPTIONS)
    bad(field, `must be an array of at most ${MAX_OPTIONS} strings`);
  const out: VerityOptions = { corruption: "eio", superblock: true };
  const seen = new Set<string>();
  list.forEach((o, i) => {
    const f = `${field}[${i}]`;
    if (typeof o !== "string" || o.length === 0 || o.length > 600) bad(f, "must be a non-empty string");
    const eq = o.indexOf("=");
    const key = eq < 0 ? o : o.slice(0, eq);
    const value = eq < 0 ? undefined : o.slice(eq + 1);
    if (WEAKENING.includes(key)) bad(f, `${key} lets corrupted or stale blocks through: refused`);
    const corruption = key === "panic-on-corruption" || key === "restart-on-corruption";
    if (seen.has(corruption ? "corruption" : key)) bad(f, `${key} given twice (or two corruption actions)`);
    seen.add(corruption ? "corruption" : key);
    const need = (): string => (value === undefined || value === "" ? bad(f, `${key} needs a value`) : value);
    if (corruption) {
      if (value !== undefined) bad(f, `${key} takes no value`);
      out.corruption = key === "panic-on-corruption" ? "panic" : "restart";
      return;
    }
    switch (key) {
      case "data-block-size":
        out.dataBlockSize = blockSize(f, need());
        return;
      case "hash-block-size":
        out.hashBlockSize = blockSize(f, need());
        return;
      case "data-blocks":
        out.dataBlocks = count(f, need());
        if (out.dataBlocks === 0) bad(f, "data-blocks must be positive");
        return;
      case "hash-offset":
        out.hashOffset = count(f, need(), 512);
        return;
      case "salt": {
        const s = need().toLowerCase();
        if (s !== "-" && (!/^[0-9a-f]+$/.test(s) || s.length % 2 !== 0 || s.length > 512))
          bad(f, "salt must be hex of at most 256 bytes, or -");
        out.salt = s;
        return;
      }
      case "format": {
        const v = need();
        if (v !== "0" && v !== "1") bad(f, "format must be 0 or 1");
        out.format = v === "0" ? 0 : 1;
        return;
      }
      case "superblock": {
        const v = need();
        if (v !== "true" && v !== "false") bad(f, "superblock must be true or false");
        out.superblock = v === "true";
        return;
      }
      case "uuid":
        if (!UUID_RE.test(need())) bad(f, "uuid must be a UUID");
        out.uuid = need().toLowerCase();
        return;
      default:
        bad(f, `${JSON.stringify(key)} is not an allowed option (see docs/VERITY.md)`);
    }
  });
  if (!out.superblock && out.salt === undefined)
    bad(field, "superblock=false needs salt= (the format parameters are not on the disk)");
  return out;
}

function deviceRef(v: unknown, field: string, which: "data" | "hash"): DeviceRef {
  if (v === undefined) return { derived: which };
  if (typeof v !== "string") bad(field, "must be a string PARTLABEL=… or PARTUUID=…");
  if (v.startsWith("PARTLABEL=")) {
    const label = v.slice("PARTLABEL=".length);
    if (!PARTLABEL_RE.test(label)) bad(field, "not a GPT partition label (1..36 characters, no / or controls)");
    return { partlabel: label };
  }
  if (v.startsWith("PARTUUID=")) {
    const uuid = v.slice("PARTUUID=".length);
    if (!UUID_RE.test(uuid)) bad(field, "PARTUUID= needs a UUID");
    return { partuuid: uuid.toLowerCase() };
  }
  return bad(field, `${JSON.stringify(v.slice(0, 40))} is neither PARTLABEL=… nor PARTUUID=… (omit it to derive it)`);
}

/** The canonical (base64, padded) signature, decoded and bounded. */
function signature(v: unknown, field: string): Uint8Array | undefined {
  if (v === undefined) return undefined;
  if (typeof v !== "string" || v.length === 0 || v.length > Math.ceil(MAX_SIGNATURE_DER / 3) * 4)
    bad(field, `must be base64 of at most ${MAX_SIGNATURE_DER} bytes`);
  if (!/^[A-Za-z0-9+/]*={0,2}$/.test(v) || v.length % 4 !== 0) bad(field, "is not canonical base64");
  return new Uint8Array(Buffer.from(v, "base64"));
}

const VOLUME_KEYS = ["name", "roothash", "hash_alg", "data", "hash", "options", "signature_p7s_b64"];

function volume(v: unknown, field: string): VerityVolume {
  if (typeof v !== "object" || v === null || Array.isArray(v)) bad(field, "must be an object");
  const o = v as Record<string, unknown>;
  for (const k of Object.keys(o)) if (!VOLUME_KEYS.includes(k)) bad(`${field}.${k}`, "unknown key");
  const name = o.name;
  if (typeof name !== "string" || !DM_NAME_PATTERN.test(name)) bad(`${field}.name`, "must be a device-mapper name");
  const hashAlg = o.hash_alg ?? "sha256";
  if (typeof hashAlg !== "string" || !Object.hasOwn(HASH_HEX_CHARS, hashAlg))
    bad(`${field}.hash_alg`, `must be one of ${Object.keys(HASH_HEX_CHARS).join(", ")}`);
  const alg = hashAlg as VerityHashAlg;
  const roothash = o.roothash;
  if (typeof roothash !== "string" || !/^[0-9a-fA-F]+$/.test(roothash) || roothash.length !== HASH_HEX_CHARS[alg])
    bad(`${field}.roothash`, `must be ${HASH_HEX_CHARS[alg]} hex digits (${alg})`);
  const lower = roothash.toLowerCase();
  const data = deviceRef(o.data, `${field}.data`, "data");
  const hash = deviceRef(o.hash, `${field}.hash`, "hash");
  // systemd refuses a null partition UUID derived from the hash; so do we
  if ((!("partlabel" in data) && !("partuuid" in data)) || (!("partlabel" in hash) && !("partuuid" in hash)))
    if (/^0{32}/.test(lower) || /0{32}$/.test(lower)) bad(`${field}.roothash`, "derives a null partition UUID");
  const options = parseVerityOptions(o.options, `${field}.options`);
  const sig = signature(o.signature_p7s_b64, `${field}.signature_p7s_b64`);
  return { name, roothash: lower, hashAlg: alg, data, hash, options, ...(sig ? { signature: sig } : {}) };
}

/** Decode and validate the released bytes (UTF-8 JSON). */
export function parseVerityResource(bytes: Uint8Array): VerityVolume[] {
  if (bytes.length > MAX_VERITY_RESOURCE_BYTES)
    bad("(document)", `${bytes.length} bytes is over the ${MAX_VERITY_RESOURCE_BYTES}-byte limit`);
  let doc: unknown;
  try {
    doc = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(bytes));
  } catch {
    bad("(document)", "is not UTF-8 JSON");
  }
  if (typeof doc !== "object" || doc === null || Array.isArray(doc)) bad("(document)", "must be a JSON object");
  const d = doc as Record<string, unknown>;
  for (const k of Object.keys(d)) if (k !== "v" && k !== "volumes") bad(k, "unknown key");
  if (d.v !== VERITY_RESOURCE_VERSION) bad("v", `must be ${VERITY_RESOURCE_VERSION}`);
  if (!Array.isArray(d.volumes) || d.volumes.length === 0 || d.volumes.length > MAX_VOLUMES)
    bad("volumes", `must be an array of 1..${MAX_VOLUMES} volumes`);
  const vols = d.volumes.map((v, i) => volume(v, `volumes[${i}]`));
  const names = new Set<string>();
  for (const v of vols) {
    if (names.has(v.name)) bad("volumes", `name ${v.name} appears twice`);
    names.add(v.name);
  }
  if (!names.has("root")) bad("volumes", 'no volume named "root" (the root file system is /dev/mapper/root)');
  return vols;
}

/** The resource JSON for one volume (what `verity format` prints). */
export function encodeVerityResource(vols: VerityVolume[]): string {
  const optionList = (o: VerityOptions): string[] => [
    ...(o.corruption !== "eio" ? [`${o.corruption}-on-corruption`] : []),
    ...(o.superblock ? [] : ["superblock=false"]),
    ...(o.format !== undefined ? [`format=${o.format}`] : []),
    ...(o.dataBlockSize !== undefined ? [`data-block-size=${o.dataBlockSize}`] : []),
    ...(o.hashBlockSize !== undefined ? [`hash-block-size=${o.hashBlockSize}`] : []),
    ...(o.dataBlocks !== undefined ? [`data-blocks=${o.dataBlocks}`] : []),
    ...(o.hashOffset !== undefined ? [`hash-offset=${o.hashOffset}`] : []),
    ...(o.salt !== undefined ? [`salt=${o.salt}`] : []),
    ...(o.uuid !== undefined ? [`uuid=${o.uuid}`] : []),
  ];
  const ref = (r: DeviceRef) =>
    "partlabel" in r ? `PARTLABEL=${r.partlabel}` : "partuuid" in r ? `PARTUUID=${r.partuuid}` : undefined;
  return (
    JSON.stringify(
      {
        v: VERITY_RESOURCE_VERSION,
        volumes: vols.map((v) => ({
          name: v.name,
          roothash: v.roothash,
          hash_alg: v.hashAlg,
          ...(ref(v.data) !== undefined ? { data: ref(v.data) } : {}),
          ...(ref(v.hash) !== undefined ? { hash: ref(v.hash) } : {}),
          options: optionList(v.options),
          ...(v.signature ? { signature_p7s_b64: Buffer.from(v.signature).toString("base64") } : {}),
        })),
      },
      null,
      2,
    ) + "\n"
  );
}

/** Discoverable Partitions: the data partition's UUID is the first 128 bits of the root hash, the hash partition's the last. */
export function derivedPartUuid(roothash: string, which: "data" | "hash"): string {
  const h = which === "data" ? roothash.slice(0, 32) : roothash.slice(-32);
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20, 32)}`;
}

/** GPT partition types of the x86-64 root and its verity hash partition (Discoverable Partitions). */
export const GPT_ROOT_VERITY_X86_64 = "2c7357ed-ebd2-46d9-aec1-23d437ec2bf5";
