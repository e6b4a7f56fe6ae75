// The `unlock` section of the configuration (owned by the unlock feature).
import { arr, bool, field, num, obj, optional, str } from "../config/validate.ts";

export const volumeSchema = obj({
  /** device-mapper name to open (e.g. "root"). */
  name: field(str({ pattern: /^[A-Za-z0-9_.+-]{1,64}$/, what: "dm name" }), "root"),
  /** LUKS UUID the volume must have. */
  uuid: optional(str({ pattern: /^[0-9a-fA-F-]{36}$/, what: "UUID" })),
  /** Device path override (tests, static images). */
  device: optional(str({ what: "path" })),
});

export const unlockSchema = obj({
  volumes: field(arr(volumeSchema, { max: 16 }), []),
  device_timeout_s: field(num({ min: 0, max: 3600 }), 90),
  passphrase_fallback: field(bool(), false),
});
