// The one configuration schema (JSON). docs/CONFIG.md documents every key.
// Trusted source: /etc/cvm-unlock/config.json baked into the initramfs (measured with the UKI).
import { arr, bool, field, num, obj, optional, str, type Infer } from "./validate.ts";
import { unlockSchema } from "./unlock-schema.ts";
import { identitySchema } from "./identity-schema.ts";
import { veritySchema } from "./verity-schema.ts";
import { RESOURCE_PATH, URL_PATTERN } from "./patterns.ts";
import { INIT_DATA_CHANNELS, type InitDataChannel } from "../init-data/channels.ts";

export const TEE_CHOICES = ["auto", "snp", "tdx", "tpm", "az-snp-vtpm", "az-tdx-vtpm", "sample"] as const;
const HANDLE_RE = /^0x8[01][0-9a-fA-F]{6}$/;

export const kbsSchema = obj({
  /** KBS base URLs, tried in order (e.g. https://kbs.example:8080). */
  endpoints: field(
    arr(str({ pattern: URL_PATTERN, what: "URL (http[s]://host[:port][/prefix])" }), { max: 16 }),
    [] as string[],
  ),
  /** PEM file with the CA(s) that may sign the KBS certificate. Replaces the system roots. */
  ca_file: optional(str({ what: "path" })),
  /** Inline PEM alternative to ca_file. */
  ca_pem: optional(str({ what: "PEM", maxLength: 256 * 1024 })),
  /** Allow plain http:// endpoints (development only). */
  insecure_http: field(bool(), false),
  /** Per-request timeout. */
  request_timeout_s: field(num({ min: 0.1, max: 600 }), 15),
  /** Optional count limit on attempts per endpoint (connection errors / timeouts / 5xx / 429).
   * Unset (the default): retry until deadline_s. */
  attempts_per_endpoint: optional(num({ min: 1, max: 1000, integer: true })),
  /** Whole-handshake attempts when the resource request is refused (trustee answers 401 for nearly everything). */
  resource_attempts: field(num({ min: 1, max: 10, integer: true }), 3),
  /** Ephemeral key type the KBS encrypts the resource to. */
  tee_key: field(str({ oneOf: ["ec-p256", "ec-p521", "rsa-oaep-256"] as const }), "ec-p256"),
  /** init-data TOML file (tester flag --init-data): used instead of init_data.sources. */
  init_data_file: optional(str({ what: "path" })),
});

export const platformSchema = obj({
  /** Which evidence source to use: auto-detect or force one. */
  tee: field(str({ oneOf: TEE_CHOICES }), "auto"),
  /** Permit the insecure `sample` TEE (development only; never auto-selected). */
  allow_sample: field(bool(), false),
  /** TPM to use: /dev/tpmrm0, or swtpm:HOST:PORT for tests. */
  tpm: field(str({ what: "TPM spec" }), "/dev/tpmrm0"),
  /** Persistent AK handle for generic `tpm` evidence (trustee default). */
  tpm_ak_handle: field(str({ pattern: HANDLE_RE, what: "persistent handle (0x81xxxxxx)" }), "0x81010002"),
  /** Azure instance metadata service base URL (THIM VCEK, TD quote). */
  azure_metadata_url: field(str({ pattern: URL_PATTERN, what: "URL" }), "http://169.254.169.254"),
  /** Use trustee v0.14-0.15 Azure tee names (azsnpvtpm/aztdxvtpm). */
  azure_legacy_tee_names: field(bool(), false),
});

export const initDataSchema = obj({
  /** Host channels to look for init-data in, in order (first found wins). Empty: none. */
  sources: field(arr(str({ oneOf: INIT_DATA_CHANNELS }), { max: INIT_DATA_CHANNELS.length }), [] as InitDataChannel[]),
  /** Refuse to run without init-data (generic images). */
  required: field(bool(), false),
  /** init-data may set the KBS, its CA, the resource and the volumes (generic images only). */
  configure: field(bool(), false),
  /** Instance metadata service base URL for the gcp/azure/aws channels (tests point it at loopback). */
  metadata_url: field(str({ pattern: URL_PATTERN, what: "URL" }), "http://169.254.169.254"),
});

export const configSchema = obj({
  kbs: field(kbsSchema, kbsSchema.parse({}, "kbs")),
  /** Resource to fetch: REPO/TYPE/TAG. */
  resource: optional(str({ pattern: RESOURCE_PATH, what: "resource path REPO/TYPE/TAG" })),
  platform: field(platformSchema, platformSchema.parse({}, "platform")),
  /** Overall deadline for one run (detect + attest + fetch + unlock). */
  deadline_s: field(num({ min: 1, max: 3600 }), 300),
  unlock: field(unlockSchema, unlockSchema.parse({}, "unlock")),
  init_data: field(initDataSchema, initDataSchema.parse({}, "init_data")),
  /** Host identity released with the disk key (docs/SSH-IDENTITY.md). */
  identity: field(identitySchema, identitySchema.parse({}, "identity")),
  /** dm-verity root whose root hash the KBS releases (docs/VERITY.md). */
  verity: optional(veritySchema),
});

export type Config = Infer<typeof configSchema.shape>;
export type KbsConfig = Config["kbs"];
export type PlatformConfig = Config["platform"];
