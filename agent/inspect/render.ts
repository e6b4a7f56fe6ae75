// Printing an Inspection: aligned "label: value" text for people, or JSON (bigints and bytes as
// strings) for tools.
import { hex } from "../../platform/util/bytes.ts";
import type { Inspection } from "./model.ts";

export function renderText(i: Inspection): string {
  const out: string[] = [i.summary];
  for (const w of i.warnings) out.push(`WARNING: ${w}`);
  for (const s of i.sections) {
    out.push("", `${s.title}:`);
    const w = Math.max(0, ...s.rows.map(([l]) => l.length));
    for (const [l, v] of s.rows) out.push(`  ${(l + ":").padEnd(w + 1)} ${v}`);
    for (const line of s.lines ?? []) out.push(`  ${line}`);
  }
  return out.join("\n") + "\n";
}

export function renderJson(i: Inspection): string {
  const value = { type: i.type, summary: i.summary, warnings: i.warnings, ...(i.json as object) };
  return (
    JSON.stringify(
      value,
      (_k, v: unknown) => {
        if (typeof v === "bigint") return `0x${v.toString(16)}`;
        if (v instanceof Uint8Array) return hex(v);
        if (v instanceof Map) return Object.fromEntries(v);
        return v;
      },
      2,
    ) + "\n"
  );
}
