// The `unlock` section of the configuration (owned by the unlock feature; docs/UNLOCK.md).
import { RESOURCE_PATH, SHA256_HEX, URL_PATTERN, UUID_PATTERN } from "./patterns.ts";
import { arr, bool, field, num, obj, optional, str } from "./validate.ts";

/** A /dev/mapper name: not "." or ".." (the path would leave /dev/mapper), not "control" (libdevmapper's own node). */
export const DM_NAME_PATTERN = /^(?!\.{1,2}$|control$)[A-Za-z0-9_.+-]{1,64}$/;
const RESOURCE_OR_PREFIX =
  /^[A-Za-z0-9_-][A-Za-z0-9_.-]*\/[A-Za-z0-9_-][A-Za-z0-9_.-]*\/([A-Za-z0-9_-][A-Za-z0-9_.-]*|\*)$/;

export const pinsSchema = obj({
  /** The LUKS UUID the key belongs to (also accepted from the KBS key document). */
  uuid: optional(str({ pattern: UUID_PATTERN, what: "UUID" })),
  /** SHA-256 fingerprint of the LUKS2 "digests" section (docs/UNLOCK.md). */
  luks2_digest_sha256: optional(str({ pattern: SHA256_HEX, what: "64 hex digits" })),
  /** SHA-256 fingerprint of the digests and the data segments (docs/UNLOCK.md §4). */
  luks2_fingerprint_v2: optional(str({ pattern: SHA256_HEX, what: "64 hex digits" })),
});

/** cryptsetup cipher spec (cipher-mode-iv); null ciphers and ECB are never acceptable, whatever the config says. */
export const LUKS_CIPHER_PATTERN = /^(?!.*(null|ecb))[a-z0-9]+(-[a-z0-9:]+)+$/i;

/** What a LUKS2 header may use (docs/UNLOCK.md §3): only the trusted file sets this, no host-influenced layer. */
export const luksAllowSchema = obj({
  /** Data segment and keyslot area ciphers. */
  ciphers: field(
    arr(str({ pattern: LUKS_CIPHER_PATTERN, what: "cipher spec without null/ecb (e.g. aes-xts-plain64)" }), {
      min: 1,
      max: 8,
    }),
    ["aes-xts-plain64"],
  ),
  /** Volume key and keyslot area key sizes in bits. */
  key_bits: field(arr(num({ min: 128, max: 1024, integer: true }), { min: 1, max: 4 }), [256, 512]),
  /** Hashes for the PBKDF2 digest, the keyslot KDF and the anti-forensic splitter. */
  hashes: field(
    arr(str({ oneOf: ["sha1", "sha256", "sha384", "sha512"] as const }), {
      min: 1,
      max: 6,
    }),
    ["sha256", "sha512"],
  ),
});

export const volumeSchema = obj({
  /** device-mapper name to open (e.g. "root"). */
  name: field(str({ pattern: DM_NAME_PATTERN, what: "dm name" }), "root"),
  /** LUKS UUID the volume must have (found via /dev/disk/by-uuid or a scan of block devices). */
  uuid: optional(str({ pattern: UUID_PATTERN, what: "UUID" })),
  /** GPT partition label (PARTNAME in /sys/class/block/X/uevent). */
  partlabel: optional(str({ pattern: /^[^\u0000-\u001f/]{1,36}$/, what: "partition label" })),
  /** Discoverable Partitions: the x86-64 root partition (type 4f68bce3-e8cd-4db1-96e7-fbcaf984b709). */
  gpt_auto_root: field(bool(), false),
  /** Device path override (tests, static images). */
  device: optional(str({ what: "path" })),
  /** KBS resource with this volume's key (default: the top-level resource). */
  resource: optional(str({ pattern: RESOURCE_PATH, what: "resource path REPO/TYPE/TAG" })),
  /** Pins checked against the header before the key is handed over. */
  pins: field(pinsSchema, pinsSchema.parse({}, "pins")),
});

/** What a host-controlled LUKS2 token of type cvm-unlock may select (it can never widen anything). */
export const luksTokenSchema = obj({
  /** Read the cvm-unlock token from the volume header at all. */
  trust: field(bool(), false),
  /** Endpoints a token may choose among (exact URLs). */
  allowed_endpoints: field(arr(str({ pattern: URL_PATTERN, what: "URL" }), { max: 16 }), [] as string[]),
  /** CA bundles (PEM files in the initramfs) a token may select by the SHA-256 of the first certificate's DER. */
  allowed_ca_files: field(arr(str({ what: "path" }), { max: 16 }), [] as string[]),
  /** Resources a token may name: exact REPO/TYPE/TAG, or REPO/TYPE/* for any tag. */
  allowed_resources: field(
    arr(str({ pattern: RESOURCE_OR_PREFIX, what: "REPO/TYPE/TAG or REPO/TYPE/*" }), { max: 64 }),
    [] as string[],
  ),
});

export const measureSchema = obj({
  /** TPM PCR extends: "required" fails the unlock when they cannot be made; "if-present" skips without a TPM. */
  tpm: field(str({ oneOf: ["required", "if-present", "off"] as const }), "if-present"),
  /** PCR for the volume identity and the leave-initrd marker (systemd uses 15 for volume keys). */
  pcr: field(num({ min: 8, max: 23, integer: true }), 15),
  /** TDX RTMR to extend through tsm-mr sysfs when present (3 is the one left to the OS). */
  rtmr: field(num({ min: 2, max: 3, integer: true }), 3),
  /** RTMR extends: like `tpm`. */
  rtmr_mode: field(str({ oneOf: ["required", "if-present", "off"] as const }), "if-present"),
  /** Event record for verifiers (CBOR sequence, no secrets). */
  record_path: field(str({ what: "path" }), "/run/cvm-unlock/measurements.cbor"),
});

export const unlockSchema = obj({
  volumes: field(arr(volumeSchema, { max: 16 }), []),
  device_timeout_s: field(num({ min: 0, max: 3600 }), 90),
  /** Let cryptsetup ask on the console when the KBS path fails. Never on by default (console = host). */
  passphrase_fallback: field(bool(), false),
  /** Refuse a raw key: the KBS must send a key document whose pins match. */
  require_pins: field(bool(), false),
  /** Accept rd.cvm_unlock.* from /proc/cmdline (only safe when the cmdline is measured, e.g. in a UKI). */
  trust_cmdline: field(bool(), false),
  luks_token: field(luksTokenSchema, luksTokenSchema.parse({}, "luks_token")),
  measure: field(measureSchema, measureSchema.parse({}, "measure")),
  /** LUKS2 header allow-list, checked before any KBS request (docs/UNLOCK.md §3). */
  luks_allow: field(luksAllowSchema, luksAllowSchema.parse({}, "luks_allow")),
  /** cryptsetup binary (looked up in the usual sbin directories when not absolute). */
  cryptsetup: field(str({ what: "path or name" }), "cryptsetup"),
  /** dmsetup binary, used to read back the live dm-crypt table after open (never with --showkeys). */
  dmsetup: field(str({ what: "path or name" }), "dmsetup"),
});
