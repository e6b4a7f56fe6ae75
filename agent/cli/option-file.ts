// A file named on the command line by the person running it (keys, tokens, policies, images):
// a regular file of bounded size. Problems are usage errors naming the option.
import * as fs from "node:fs";
import { CvmError, errorMessage } from "../../platform/util/errors.ts";

/** The bytes of `file` (a fresh Buffer the caller may zero). */
export function readOptionFile(file: string, max: number, option: string): Buffer {
  let st: fs.Stats;
  try {
    st = fs.statSync(file);
  } catch (e) {
    throw new CvmError("usage", `${option} ${file}: ${errorMessage(e)}`);
  }
  if (!st.isFile() || st.size > max)
    throw new CvmError("usage", `${option} ${file} is not a regular file of at most ${max} bytes`);
  try {
    return fs.readFileSync(file);
  } catch (e) {
    throw new CvmError("usage", `${option} ${file}: ${errorMessage(e)}`);
  }
}
