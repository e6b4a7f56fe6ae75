// The LUKS2 header allow-list (docs/UNLOCK.md §3): checked before any KBS request, because the
// header is host-writable and cryptsetup obeys it. A host that rewrites the data segment to
// cipher_null or ECB (checksums recomputed, UUID, digests and keyslots untouched) would otherwise
// get the real key piped into a mapping that stores the guest's data in plaintext
// (CVE-2025-59054 / CVE-2025-58356 class). What is acceptable comes from the trusted file only
// (unlock.luks_allow); null ciphers and ECB are refused even if configured.
import { CvmError, ParseError } from "../../platform/util/errors.ts";
import type { Luks2Header } from "../../platform/luks/luks2-header.ts";
import { parseLuks2Layout, segmentKey, type Luks2Layout, type Luks2Segment } from "../../platform/luks/luks2-layout.ts";
import type { Config } from "../config/schema.ts";

export type LuksAllow = Config["unlock"]["luks_allow"];

/** What was verified: the one data segment and its volume key size, as cryptsetup must map them. */
export interface VerifiedLayout {
  layout: Luks2Layout;
  segment: Luks2Segment;
  keyBytes: number;
}

/** Persistent activation flags that only tune performance (cryptsetup --persistent). */
const PERFORMANCE_FLAGS = ["same-cpu-crypt", "submit-from-crypt-cpus", "no-read-workqueue", "no-write-workqueue"];
/** Never acceptable, whatever unlock.luks_allow says. */
const NEVER = /null|ecb/i;
/** cryptsetup's own minimum for PBKDF2 and the LUKS2 AF stripe count it always writes. */
const MIN_PBKDF2_ITERATIONS = 1000;
const AF_STRIPES = 4000;
/** Argon2 bounds: cryptsetup's maximum memory (4 GiB in KiB), and generous time/thread limits. */
const ARGON2_MAX_MEMORY_KIB = 4 * 1024 * 1024;
const ARGON2_MAX_TIME = 1000;
const ARGON2_MAX_CPUS = 64;

function refuse(device: string, field: string, problem: string): never {
  throw new CvmError("volume", `${device}: LUKS2 header ${field} ${problem}: refusing before contacting the KBS`, {
    hint: "a host-rewritten header, or a volume formatted with settings outside unlock.luks_allow (docs/UNLOCK.md §3)",
  });
}

function cipher(device: string, field: string, value: string, allow: LuksAllow): void {
  if (NEVER.test(value)) refuse(device, field, `is ${JSON.stringify(value)} (a null or ECB cipher is never accepted)`);
  if (!allow.ciphers.includes(value))
    refuse(
      device,
      field,
      `is ${JSON.stringify(value)}, not in unlock.luks_allow.ciphers (${allow.ciphers.join(", ")})`,
    );
}

function keyBits(device: string, field: string, bytes: number, allow: LuksAllow): void {
  if (!allow.key_bits.includes(bytes * 8))
    refuse(device, field, `is ${bytes * 8} bits, not in unlock.luks_allow.key_bits (${allow.key_bits.join(", ")})`);
}

function hash(device: string, field: string, value: string | undefined, allow: LuksAllow): void {
  if (value === undefined || !(allow.hashes as string[]).includes(value))
    refuse(device, field, `is ${JSON.stringify(value)}, not in unlock.luks_allow.hashes (${allow.hashes.join(", ")})`);
}

function inRange(device: string, field: string, v: number | undefined, min: number, max: number): void {
  if (v === undefined || v < min || v > max) refuse(device, field, `is ${v}, outside ${min}..${max}`);
}

function checkKeyslots(device: string, layout: Luks2Layout, allow: LuksAllow): void {
  for (const k of layout.keyslots) {
    const p = `keyslots.${k.id}`;
    if (k.type !== "luks2") refuse(device, `${p}.type`, `is ${JSON.stringify(k.type)} (only "luks2" keyslots)`);
    keyBits(device, `${p}.key_size`, k.keySize, allow);
    if (k.area.type !== "raw") refuse(device, `${p}.area.type`, `is ${JSON.stringify(k.area.type)} (only "raw")`);
    cipher(device, `${p}.area.encryption`, k.area.encryption, allow);
    keyBits(device, `${p}.area.key_size`, k.area.keySize, allow);
    if (k.af.type !== "luks1" || k.af.stripes !== AF_STRIPES)
      refuse(device, `${p}.af`, `is ${k.af.type}/${k.af.stripes} stripes (only luks1 with ${AF_STRIPES})`);
    hash(device, `${p}.af.hash`, k.af.hash, allow);
    if (k.kdf.type === "pbkdf2") {
      hash(device, `${p}.kdf.hash`, k.kdf.hash, allow);
      inRange(device, `${p}.kdf.iterations`, k.kdf.iterations, MIN_PBKDF2_ITERATIONS, 0xffffffff);
    } else if (k.kdf.type === "argon2i" || k.kdf.type === "argon2id") {
      inRange(device, `${p}.kdf.time`, k.kdf.time, 1, ARGON2_MAX_TIME);
      inRange(device, `${p}.kdf.memory`, k.kdf.memory, 32, ARGON2_MAX_MEMORY_KIB);
      inRange(device, `${p}.kdf.cpus`, k.kdf.cpus, 1, ARGON2_MAX_CPUS);
    } else refuse(device, `${p}.kdf.type`, `is ${JSON.stringify(k.kdf.type)} (pbkdf2, argon2i or argon2id)`);
  }
}

/**
 * Check the header against the allow-list and return the layout cryptsetup must produce. Throws a
 * `volume` error naming the field; malformed metadata (luks2-layout.ts) is a `volume` error too.
 */
export function verifyHeaderPolicy(header: Luks2Header, allow: LuksAllow, device: string): VerifiedLayout {
  let layout: Luks2Layout;
  let key: ReturnType<typeof segmentKey>;
  try {
    layout = parseLuks2Layout(header);
    if (layout.segments.length !== 1)
      refuse(
        device,
        "segments",
        `has ${layout.segments.length} data segments (exactly one; no reencryption in progress)`,
      );
    key = segmentKey(layout, layout.segments[0]!);
  } catch (e) {
    if (e instanceof ParseError) throw new CvmError("volume", `${device}: ${e.message}`, { cause: e });
    throw e;
  }
  if (layout.requirements.length > 0)
    refuse(device, "config.requirements.mandatory", `lists ${layout.requirements.join(", ")}`);
  for (const f of layout.configFlags)
    if (!PERFORMANCE_FLAGS.includes(f))
      refuse(device, "config.flags", `contains ${JSON.stringify(f)} (only ${PERFORMANCE_FLAGS.join(", ")})`);
  const seg = layout.segments[0]!;
  const p = `segments.${seg.id}`;
  if (seg.type !== "crypt") refuse(device, `${p}.type`, `is ${JSON.stringify(seg.type)} (only "crypt")`);
  cipher(device, `${p}.encryption`, seg.encryption, allow);
  keyBits(device, `${p} volume key size`, key.keyBytes, allow);
  if (seg.integrity) refuse(device, `${p}.integrity`, "is set (authenticated encryption is not supported)");
  if (seg.flags.length > 0) refuse(device, `${p}.flags`, `is ${JSON.stringify(seg.flags)} (must be empty)`);
  if (seg.ivTweak !== 0n) refuse(device, `${p}.iv_tweak`, `is ${seg.ivTweak} (must be 0)`);
  for (const d of layout.digests) {
    if (d.type !== "pbkdf2") refuse(device, `digests.${d.id}.type`, `is ${JSON.stringify(d.type)} (only "pbkdf2")`);
    hash(device, `digests.${d.id}.hash`, d.hash, allow);
    inRange(device, `digests.${d.id}.iterations`, d.iterations, MIN_PBKDF2_ITERATIONS, 0xffffffff);
  }
  checkKeyslots(device, layout, allow);
  return { layout, segment: seg, keyBytes: key.keyBytes };
}
