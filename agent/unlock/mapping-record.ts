// /run/cvm-unlock/verified.json (mode B): for each volume the key server serves, the dm-crypt
// mapping its verified LUKS2 header implies (live-table.ts ExpectedMapping) and the table options
// crypttab asked for. The key server writes it before it hands out any key; `verify-mapping`,
// run after each systemd-cryptsetup@ unit, reads it strictly and compares the live table with it,
// because systemd-cryptsetup reads the header from the device again (time of check ≠ time of use).
// Never key material. Format: {"version": 1, "volumes": [{"name", "uuid", "device", "mapping":
// {"cipher", "key_bytes", "iv_offset", "offset", "length", "sector_size", "identity": {...}},
// "table_options": [...]}]} (numbers in sectors as decimal strings).
import * as path from "node:path";
import { writeFileAtomic } from "../../platform/util/files.ts";
import { DM_NAME_PATTERN } from "../config/unlock-schema.ts";
import type { Config } from "../config/schema.ts";
import type { ExpectedMapping } from "./live-table.ts";
import { decodeStateVolumes, readStateFile } from "./state-file.ts";

export const MAPPING_RECORD_VERSION = 1;
const MAX_VOLUMES = 16;
const MAX_RECORD_BYTES = 64 * 1024;
const DEC = /^\d{1,20}$/;

export interface VerifiedVolume {
  name: string;
  uuid: string;
  device: string;
  mapping: ExpectedMapping;
  tableOptions: string[];
}

export function mappingRecordPath(config: Config): string {
  return path.join(path.dirname(config.unlock.measure.record_path), "verified.json");
}

export function encodeMappingRecord(volumes: VerifiedVolume[]): string {
  return (
    JSON.stringify({
      version: MAPPING_RECORD_VERSION,
      volumes: volumes.map((v) => ({
        name: v.name,
        uuid: v.uuid,
        device: v.device,
        mapping: {
          cipher: v.mapping.cipher,
          key_bytes: v.mapping.keyBytes,
          iv_offset: v.mapping.ivOffset.toString(),
          offset: v.mapping.offset.toString(),
          length: v.mapping.length.toString(),
          sector_size: v.mapping.sectorSize,
          identity: v.mapping.identity,
        },
        table_options: v.tableOptions,
      })),
    }) + "\n"
  );
}

/** Strict: anything encodeMappingRecord would not write is a `volume` error naming the field. */
export function decodeMappingRecord(text: string, where: string): VerifiedVolume[] {
  return decodeStateVolumes(text, where, MAPPING_RECORD_VERSION, MAX_VOLUMES, (v, f, bad): VerifiedVolume => {
    const object = (x: unknown, at: string): Record<string, unknown> =>
      typeof x === "object" && x !== null && !Array.isArray(x)
        ? (x as Record<string, unknown>)
        : bad(at, "is not an object");
    const only = (o: Record<string, unknown>, at: string, keys: string[]) => {
      for (const k of Object.keys(o)) if (!keys.includes(k)) bad(`${at}.${k}`, "is not a known key");
    };
    const str = (x: unknown, at: string, re: RegExp): string =>
      typeof x === "string" && re.test(x) ? x : bad(at, "is malformed");
    const int = (x: unknown, at: string): number =>
      Number.isSafeInteger(x) && (x as number) >= 0 ? (x as number) : bad(at, "is not a whole number");
    only(v, f, ["name", "uuid", "device", "mapping", "table_options"]);
    const m = object(v.mapping, `${f}.mapping`);
    only(m, `${f}.mapping`, ["cipher", "key_bytes", "iv_offset", "offset", "length", "sector_size", "identity"]);
    const id = object(m.identity, `${f}.mapping.identity`);
    only(id, `${f}.mapping.identity`, ["block", "devno", "dev", "ino"]);
    if (typeof id.block !== "boolean") bad(`${f}.mapping.identity.block`, "is not a boolean");
    if (!Array.isArray(v.table_options) || v.table_options.length > 8)
      bad(`${f}.table_options`, "is not a short array");
    return {
      name: str(v.name, `${f}.name`, DM_NAME_PATTERN),
      uuid: str(v.uuid, `${f}.uuid`, /^[0-9a-f-]{36}$/),
      device: str(v.device, `${f}.device`, /^\/.{0,4095}$/),
      mapping: {
        cipher: str(m.cipher, `${f}.mapping.cipher`, /^[A-Za-z0-9:_-]{1,128}$/),
        keyBytes: int(m.key_bytes, `${f}.mapping.key_bytes`),
        ivOffset: BigInt(str(m.iv_offset, `${f}.mapping.iv_offset`, DEC)),
        offset: BigInt(str(m.offset, `${f}.mapping.offset`, DEC)),
        length: BigInt(str(m.length, `${f}.mapping.length`, DEC)),
        sectorSize: int(m.sector_size, `${f}.mapping.sector_size`),
        identity: {
          block: id.block as boolean,
          devno: str(id.devno, `${f}.mapping.identity.devno`, /^\d+:\d+$/),
          dev: int(id.dev, `${f}.mapping.identity.dev`),
          ino: int(id.ino, `${f}.mapping.identity.ino`),
        },
      },
      tableOptions: (v.table_options as unknown[]).map((x, j) => str(x, `${f}.table_options[${j}]`, /^[a-z_]{1,32}$/)),
    };
  });
}

/** The record; [] when absent (nothing verified in this boot). */
export function readMappingRecord(file: string): VerifiedVolume[] {
  return readStateFile(file, "the verified-mappings record", MAX_RECORD_BYTES, decodeMappingRecord);
}

export function writeMappingRecord(file: string, volumes: VerifiedVolume[]): void {
  writeFileAtomic(file, encodeMappingRecord(volumes));
}
