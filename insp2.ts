import * as fs from "node:fs";
import { detectType, inspectBytes, renderText } from "./platform/inspect/index.ts";
const b = new Uint8Array(fs.readFileSync(process.argv[2]!));
process.stdout.write(renderText(inspectBytes(b, detectType(b)!)));
