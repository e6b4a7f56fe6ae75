// The `verity` section of the configuration (docs/VERITY.md): a dm-verity root whose root hash the
// KBS releases, optionally signed by the owner's key whose certificate is in the measured initramfs.
import { RESOURCE_PATH } from "./patterns.ts";
import { field, num, obj, optional, required, str } from "./validate.ts";

export const veritySchema = obj({
  /** KBS resource holding the verity document {v:1, volumes:[...]}. */
  resource: required(str({ pattern: RESOURCE_PATH, what: "resource path REPO/TYPE/TAG" })),
  /** PEM certificate(s) whose key must have signed each root hash (PKCS#7, detached). */
  signer_cert: optional(str({ what: "path" })),
  /** How long to wait for the data and hash partitions. */
  device_timeout_s: field(num({ min: 0, max: 3600 }), 90),
  /** veritysetup binary (looked up in the usual sbin directories when not absolute). */
  veritysetup: field(str({ what: "path or name" }), "veritysetup"),
});
