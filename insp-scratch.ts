import * as fs from "node:fs";
import * as zlib from "node:zlib";
import { detectType, inspectBytes, renderText, renderJson } from "./platform/inspect/index.ts";
const files = process.argv.slice(2);
for (const f of files) {
  let b = new Uint8Array(fs.readFileSync(f)); if (f.endsWith(".gz")) b = new Uint8Array(zlib.gunzipSync(b));
  if (f.endsWith(".hex")) b = new Uint8Array(Buffer.from(fs.readFileSync(f, "utf8").trim(), "hex"));
  const t = detectType(b);
  try { const i = inspectBytes(b, t!); const txt = renderText(i); renderJson(i); console.log(f, "=>", t, "|", i.summary, "|", i.warnings.join("; "), txt.length); } catch (e) { console.log(f, "=>", t, "ERR", (e as Error).message); }
}
