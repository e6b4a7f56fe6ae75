// A small strict validator: unknown keys and wrong types are errors that name the JSON path.
// Hand-written (no schema library) so the rules are visible and the binary stays small.
import { CvmError } from "../../platform/util/errors.ts";

export interface Schema<T> {
  parse(v: unknown, path: string): T;
  /** One-line type description for `config --explain` and errors. */
  readonly describe: string;
}

function fail(path: string, msg: string): never {
  throw new CvmError("config", `config ${path || "(root)"}: ${msg}`);
}

function typeName(v: unknown): string {
  if (v === null) return "null";
  if (Array.isArray(v)) return "array";
  return typeof v;
}

export function str<T extends string>(opts: { oneOf: readonly T[]; what?: string }): Schema<T>;
export function str(opts?: { pattern?: RegExp; maxLength?: number; what?: string }): Schema<string>;
export function str(
  opts: { pattern?: RegExp; oneOf?: readonly string[]; maxLength?: number; what?: string } = {},
): Schema<string> {
  const describe = opts.oneOf ? opts.oneOf.map((s) => JSON.stringify(s)).join(" | ") : (opts.what ?? "string");
  return {
    describe,
    parse(v, path) {
      if (typeof v !== "string") fail(path, `expected ${describe}, got ${typeName(v)}`);
      if (opts.maxLength !== undefined && v.length > opts.maxLength)
        fail(path, `longer than ${opts.maxLength} characters`);
      if (opts.oneOf && !opts.oneOf.includes(v)) fail(path, `expected ${describe}, got ${JSON.stringify(v)}`);
      if (opts.pattern && !opts.pattern.test(v))
        fail(path, `${JSON.stringify(v)} is not a valid ${opts.what ?? "value"}`);
      return v;
    },
  };
}

export function bool(): Schema<boolean> {
  return {
    describe: "boolean",
    parse(v, path) {
      if (typeof v !== "boolean") fail(path, `expected boolean, got ${typeName(v)}`);
      return v;
    },
  };
}

export function num(opts: { min?: number; max?: number; integer?: boolean } = {}): Schema<number> {
  const describe = `${opts.integer ? "integer" : "number"}${opts.min !== undefined ? ` >= ${opts.min}` : ""}${opts.max !== undefined ? ` <= ${opts.max}` : ""}`;
  return {
    describe,
    parse(v, path) {
      if (typeof v !== "number" || !Number.isFinite(v)) fail(path, `expected ${describe}, got ${typeName(v)}`);
      if (opts.integer && !Number.isInteger(v)) fail(path, `expected an integer, got ${v}`);
      if (opts.min !== undefined && v < opts.min) fail(path, `must be >= ${opts.min}, got ${v}`);
      if (opts.max !== undefined && v > opts.max) fail(path, `must be <= ${opts.max}, got ${v}`);
      return v;
    },
  };
}

export function arr<T>(item: Schema<T>, opts: { min?: number; max?: number } = {}): Schema<T[]> & { item: Schema<T> } {
  return {
    item,
    describe: `array of ${item.describe}`,
    parse(v, path) {
      if (!Array.isArray(v)) fail(path, `expected array, got ${typeName(v)}`);
      if (opts.min !== undefined && v.length < opts.min) fail(path, `needs at least ${opts.min} element(s)`);
      if (opts.max !== undefined && v.length > opts.max) fail(path, `at most ${opts.max} element(s)`);
      return v.map((x, i) => item.parse(x, `${path}[${i}]`));
    },
  };
}

type Field<T> = { schema: Schema<T>; default?: T; optional?: boolean };
type Shape = Record<string, Field<any>>;
export type Infer<S extends Shape> = {
  [K in keyof S]: S[K] extends { default: infer D }
    ? D
    : S[K] extends { optional: true; schema: Schema<infer T> }
      ? T | undefined
      : S[K] extends { schema: Schema<infer T> }
        ? T
        : never;
};

export function field<T>(schema: Schema<T>, def: T): { schema: Schema<T>; default: T } {
  return { schema, default: def };
}
export function optional<T>(schema: Schema<T>): { schema: Schema<T>; optional: true } {
  return { schema, optional: true };
}
export function required<T>(schema: Schema<T>): { schema: Schema<T> } {
  return { schema };
}

export function obj<S extends Shape>(shape: S): Schema<Infer<S>> & { shape: S } {
  return {
    shape,
    describe: "object",
    parse(v, path) {
      if (typeof v !== "object" || v === null || Array.isArray(v)) fail(path, `expected object, got ${typeName(v)}`);
      const rec = v as Record<string, unknown>;
      for (const k of Object.keys(rec)) {
        if (!Object.hasOwn(shape, k))
          fail(path ? `${path}.${k}` : k, `unknown key (known: ${Object.keys(shape).join(", ")})`);
      }
      const out: Record<string, unknown> = {};
      for (const [k, f] of Object.entries(shape)) {
        const p = path ? `${path}.${k}` : k;
        if (rec[k] === undefined) {
          if ("default" in f) out[k] = structuredClone(f.default);
          else if (f.optional) out[k] = undefined;
          else fail(p, "is required");
        } else out[k] = f.schema.parse(rec[k], p);
      }
      return out as Infer<S>;
    },
  };
}
