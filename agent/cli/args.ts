// Command-line parsing: GNU-style long options, declared per command so that --help is generated
// from the same table and an unknown flag is an error (exit 2), never silently ignored.
import { CvmError } from "../../platform/util/errors.ts";

export interface OptionSpec {
  name: string; // without leading dashes
  kind: "bool" | "string" | "list"; // list = repeatable string
  value?: string; // placeholder for help, e.g. FILE
  help: string;
  hidden?: boolean; // test-only options, not listed in --help
}

export interface ParsedArgs {
  options: Map<string, string | string[] | boolean>;
  positionals: string[];
}

export function parseArgs(argv: string[], specs: OptionSpec[]): ParsedArgs {
  const byName = new Map(specs.map((s) => [s.name, s]));
  const options = new Map<string, string | string[] | boolean>();
  const positionals: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === "--") {
      positionals.push(...argv.slice(i + 1));
      break;
    }
    if (a === "-h") {
      options.set("help", true);
      continue;
    }
    if (!a.startsWith("--")) {
      if (a.startsWith("-") && a !== "-") throw new CvmError("usage", `unknown option ${a}`);
      positionals.push(a);
      continue;
    }
    const eq = a.indexOf("=");
    const name = a.slice(2, eq === -1 ? undefined : eq);
    const spec = byName.get(name);
    if (!spec) throw new CvmError("usage", `unknown option --${name} (see --help)`);
    if (spec.kind === "bool") {
      if (eq !== -1) throw new CvmError("usage", `--${name} takes no value`);
      options.set(name, true);
      continue;
    }
    let value: string;
    if (eq !== -1) value = a.slice(eq + 1);
    else {
      const next = argv[i + 1];
      if (next === undefined)
        throw new CvmError("usage", `--${name} needs a value${spec.value ? ` (${spec.value})` : ""}`);
      value = next;
      i++;
    }
    if (spec.kind === "list") {
      const prev = options.get(name);
      options.set(name, [...(Array.isArray(prev) ? prev : []), value]);
    } else options.set(name, value);
  }
  return { options, positionals };
}

export function optString(p: ParsedArgs, name: string): string | undefined {
  const v = p.options.get(name);
  return typeof v === "string" ? v : undefined;
}
export function optList(p: ParsedArgs, name: string): string[] {
  const v = p.options.get(name);
  return Array.isArray(v) ? v : [];
}
export function optBool(p: ParsedArgs, name: string): boolean {
  return p.options.get(name) === true;
}
export function optInt(p: ParsedArgs, name: string, min = 0, max = Number.MAX_SAFE_INTEGER): number | undefined {
  const v = optString(p, name);
  if (v === undefined) return undefined;
  if (!/^\d+$/.test(v)) throw new CvmError("usage", `--${name} expects a whole number, got ${JSON.stringify(v)}`);
  const n = Number(v);
  if (n < min || n > max) throw new CvmError("usage", `--${name} must be between ${min} and ${max}`);
  return n;
}
export function optNumber(p: ParsedArgs, name: string, min: number, max: number): number | undefined {
  const v = optString(p, name);
  if (v === undefined) return undefined;
  const n = Number(v);
  if (v.trim() === "" || !Number.isFinite(n) || n < min || n > max)
    throw new CvmError("usage", `--${name} must be a number between ${min} and ${max}`);
  return n;
}

export function formatOptions(specs: OptionSpec[]): string {
  const rows = specs
    .filter((s) => !s.hidden)
    .map(
      (s) =>
        [
          `--${s.name}${s.kind === "bool" ? "" : ` ${s.value ?? "VALUE"}`}${s.kind === "list" ? " (repeatable)" : ""}`,
          s.help,
        ] as const,
    );
  const w = Math.max(0, ...rows.map(([l]) => l.length));
  return rows.map(([l, h]) => `  ${l.padEnd(w)}  ${h}`).join("\n");
}
