// Reading a LUKS2 header from a block device or image file: bounded reads (at most 2 x 4 MiB),
// both copies parsed and required to agree.
import * as fs from "node:fs";
import { CvmError, ParseError, errorMessage } from "../util/errors.ts";
import {
  LUKS2_BINARY_HEADER_SIZE,
  checkHeaderPair,
  parseLuks2Header,
  peekHeaderSize,
  type Luks2Header,
} from "./luks2-header.ts";

function readExactly(fd: number, len: number, pos: number, what: string, device: string): Uint8Array {
  const buf = new Uint8Array(len);
  let got = 0;
  while (got < len) {
    const n = fs.readSync(fd, buf, got, len - got, pos + got);
    if (n === 0) throw new ParseError("LUKS2 header", what, pos + got, `${device} ends after ${pos + got} bytes`);
    got += n;
  }
  return buf;
}

/** The verified primary header of `device` (secondary copy checked to agree). */
export function readLuks2Header(device: string): Luks2Header {
  let fd: number;
  try {
    fd = fs.openSync(device, "r");
  } catch (e) {
    throw new CvmError("volume", `cannot open ${device}: ${errorMessage(e)}`);
  }
  try {
    const first = readExactly(fd, LUKS2_BINARY_HEADER_SIZE, 0, "binary header", device);
    let size: number;
    try {
      size = peekHeaderSize(first);
    } catch (e) {
      if (e instanceof ParseError && e.field === "magic")
        throw new CvmError("volume", `${device} is not a LUKS2 volume (${e.message})`);
      throw e;
    }
    const primaryBytes = readExactly(fd, size, 0, "primary header", device);
    const primary = parseLuks2Header(primaryBytes, "primary");
    const secondaryBytes = readExactly(fd, size, size, "secondary header", device);
    const secondary = parseLuks2Header(secondaryBytes, "secondary");
    checkHeaderPair(primary, secondary);
    return primary;
  } catch (e) {
    if (e instanceof ParseError) throw new CvmError("volume", `${device}: ${e.message}`, { cause: e });
    throw e;
  } finally {
    fs.closeSync(fd);
  }
}
