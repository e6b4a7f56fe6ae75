// Value formats shared by the config schema, host-controlled layers (kernel cmdline, LUKS token),
// the KBS key document and the CLI, so that every source accepts exactly the same strings.

/**
 * KBS base URL: http[s]://host[:port][/prefix], no query, fragment, whitespace or backslash. The
 * prefix may not start with "//": a URL parser reads "https://kbs.example//attacker.example" as a
 * path, but resolving "//attacker.example/kbs/v0/auth" against it sends the request to
 * attacker.example (WHATWG URLs also read "\" as "/").
 */
export const URL_PATTERN = /^https?:\/\/[^\s/?#\\]+(\/(?!\/)[^\s?#\\]*)?$/;
/** trustee ResourceDesc: REPO/TYPE/TAG, each segment [A-Za-z0-9_-] then [A-Za-z0-9_.-]*. */
export const RESOURCE_PATH =
  /^[A-Za-z0-9_-][A-Za-z0-9_.-]*\/[A-Za-z0-9_-][A-Za-z0-9_.-]*\/[A-Za-z0-9_-][A-Za-z0-9_.-]*$/;
/** A LUKS UUID (either case; compared lower-case). */
export const UUID_PATTERN = /^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$/;
/** A SHA-256 digest in hex (either case; compared lower-case). */
export const SHA256_HEX = /^[0-9a-fA-F]{64}$/;
