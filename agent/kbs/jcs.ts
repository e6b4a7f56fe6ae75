// RFC 8785 JSON Canonicalization Scheme (JCS), as serde_json_canonicalizer produces it on the
// trustee side: object members sorted by UTF-16 code units at every level, no whitespace,
// numbers in ECMAScript shortest form, strings escaped exactly as JSON.stringify does.
// The runtime-data digest bound into hardware evidence is a hash of this output, so a single
// byte of difference makes attestation fail: keep this pure and strict.

/** Nesting bound: runtime data is three levels deep; anything far deeper is a bug or hostile. */
const MAX_DEPTH = 64;

export type JsonValue = null | boolean | number | string | JsonValue[] | { [key: string]: JsonValue };

export class JcsError extends TypeError {
  constructor(path: string, problem: string) {
    super(`JCS: value at ${path}: ${problem}`);
    this.name = "JcsError";
  }
}

/** Canonical JSON text of `value`. Throws JcsError for anything JSON cannot represent exactly. */
export function canonicalize(value: unknown): string {
  return encode(value, "$", 0);
}

function encode(value: unknown, path: string, depth: number): string {
  if (depth > MAX_DEPTH) throw new JcsError(path, `nested deeper than ${MAX_DEPTH} levels`);
  if (value === null) return "null";
  switch (typeof value) {
    case "boolean":
      return value ? "true" : "false";
    case "number":
      if (!Number.isFinite(value))
        throw new JcsError(path, `${value} is not a finite number (JSON has no NaN/Infinity)`);
      // ES Number::toString is the RFC 8785 number form; JSON.stringify also maps -0 to "0".
      return JSON.stringify(value);
    case "string":
      return JSON.stringify(value);
    case "object":
      if (Array.isArray(value)) return `[${value.map((v, i) => encode(v, `${path}[${i}]`, depth + 1)).join(",")}]`;
      if (!isPlainObject(value)) throw new JcsError(path, `${describe(value)} is not a plain JSON object`);
      return encodeObject(value as Record<string, unknown>, path, depth);
    default:
      throw new JcsError(path, `${typeof value} cannot be represented in JSON`);
  }
}

function encodeObject(obj: Record<string, unknown>, path: string, depth: number): string {
  const members: string[] = [];
  // Default sort compares UTF-16 code units, which is exactly what RFC 8785 §3.2.3 asks for.
  for (const key of Object.keys(obj).sort()) {
    const v = obj[key];
    if (v === undefined) throw new JcsError(`${path}.${key}`, "undefined has no JSON form");
    members.push(`${JSON.stringify(key)}:${encode(v, `${path}.${key}`, depth + 1)}`);
  }
  return `{${members.join(",")}}`;
}

function isPlainObject(v: object): boolean {
  const proto = Object.getPrototypeOf(v);
  return proto === Object.prototype || proto === null;
}

function describe(v: object): string {
  return v.constructor?.name ? `a ${v.constructor.name}` : "an exotic object";
}
