// Guards for host-influenced configuration layers (agent/config/load.ts ConfigLayer.guard): a layer
// may set only the listed paths (a listed path covers everything below it); anything else is a
// config error that names the offending key and the source.
import { CvmError } from "../../../platform/util/errors.ts";
import type { JsonObject } from "../load.ts";
import type { Config } from "../schema.ts";

function leafPaths(obj: JsonObject, prefix = ""): string[] {
  const out: string[] = [];
  for (const [k, v] of Object.entries(obj)) {
    const p = prefix ? `${prefix}.${k}` : k;
    if (typeof v === "object" && v !== null && !Array.isArray(v) && Object.keys(v).length > 0)
      out.push(...leafPaths(v as JsonObject, p));
    else out.push(p);
  }
  return out;
}

export function guardLayer(
  source: string,
  allowed: string[],
  extra?: (data: JsonObject, base: Config) => void,
): (data: JsonObject, base: Config) => void {
  return (data, base) => {
    for (const p of leafPaths(data)) {
      if (!allowed.some((a) => p === a || p.startsWith(a + ".")))
        throw new CvmError("config", `${source} may not set ${p} (it may set only: ${allowed.join(", ")})`, {
          hint: "host-controlled configuration can only select among what the trusted config allows",
        });
    }
    extra?.(data, base);
  };
}
