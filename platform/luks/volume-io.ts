// Reading a LUKS2 header from a block device or image file: bounded reads (at most 2 x 4 MiB,
// plus a keyslots area of at most 128 MiB for readLuks2Volume), both copies parsed and required
// to agree.
import * as fs from "node:fs";
import * as path from "node:path";
import { CvmError, ParseError, errorMessage } from "../util/errors.ts";
import {
  LUKS2_BINARY_HEADER_SIZE,
  checkHeaderPair,
  parseLuks2Header,
  peekHeaderSize,
  type Luks2Header,
} from "./luks2-header.ts";
import { parseLuks2Layout } from "./luks2-layout.ts";
import { devnoOf } from "./block-devices.ts";

/** Fill `buf` from device offset `pos` (buf may be a view into a larger buffer: no copy). */
function readInto(fd: number, buf: Uint8Array, pos: number, what: string, device: string): Uint8Array {
  let got = 0;
  while (got < buf.length) {
    const n = fs.readSync(fd, buf, got, buf.length - got, pos + got);
    if (n === 0) throw new ParseError("LUKS2 header", what, pos + got, `${device} ends after ${pos + got} bytes`);
    got += n;
  }
  return buf;
}

function readExactly(fd: number, len: number, pos: number, what: string, device: string): Uint8Array {
  return readInto(fd, new Uint8Array(len), pos, what, device);
}

/** A verified header with every metadata byte cryptsetup will read: what the agent checked is what it hands over. */
export interface Luks2Volume {
  header: Luks2Header;
  /** Bytes 0 .. 2 x hdr_size + keyslots_size of the device, exactly as read and verified. */
  metadata: Uint8Array;
  /** Size of the device in bytes (for a block device from sysfs; for an image file its length). */
  deviceBytes: bigint;
  /** st_dev/st_ino of an image file, st_rdev of a block device: what the live mapping must sit on. */
  identity: { block: boolean; devno: string; dev: number; ino: number };
}

function deviceBytes(st: fs.Stats, root: string): bigint {
  if (!st.isBlockDevice()) return BigInt(st.size);
  const majMin = devnoOf(st.rdev);
  const text = fs.readFileSync(path.join(root, "sys/dev/block", majMin, "size"), "utf8").trim();
  if (!/^\d{1,20}$/.test(text))
    throw new CvmError("volume", `sysfs size of block device ${majMin} is ${JSON.stringify(text)}`);
  return BigInt(text) * 512n;
}

function withDevice<T>(device: string, fn: (fd: number) => T): T {
  let fd: number;
  try {
    fd = fs.openSync(device, "r");
  } catch (e) {
    throw new CvmError("volume", `cannot open ${device}: ${errorMessage(e)}`);
  }
  try {
    return fn(fd);
  } catch (e) {
    if (e instanceof ParseError) throw new CvmError("volume", `${device}: ${e.message}`, { cause: e });
    throw e;
  } finally {
    fs.closeSync(fd);
  }
}

function readHeaderPair(fd: number, device: string): { primary: Luks2Header; bytes: Uint8Array } {
  const first = readExactly(fd, LUKS2_BINARY_HEADER_SIZE, 0, "binary header", device);
  let size: number;
  try {
    size = peekHeaderSize(first);
  } catch (e) {
    if (e instanceof ParseError && e.field === "magic")
      throw new CvmError("volume", `${device} is not a LUKS2 volume (${e.message})`);
    throw e;
  }
  const bytes = readExactly(fd, 2 * size, 0, "primary and secondary header", device);
  const primary = parseLuks2Header(bytes.subarray(0, size), "primary");
  const secondary = parseLuks2Header(bytes.subarray(size), "secondary");
  checkHeaderPair(primary, secondary);
  return { primary, bytes };
}

/**
 * The verified header and the whole metadata area (both headers and the keyslots area) in one
 * read session, for opening with a private copy (`cryptsetup open --header COPY`). `root` is the
 * platform root for sysfs.
 */
export function readLuks2Volume(device: string, root = "/"): Luks2Volume {
  return withDevice(device, (fd) => {
    const { primary, bytes } = readHeaderPair(fd, device);
    const total = Number(parseLuks2Layout(primary).metadataBytes);
    const metadata = new Uint8Array(total);
    metadata.set(bytes);
    readInto(fd, metadata.subarray(bytes.length), bytes.length, "keyslots area", device);
    const st = fs.fstatSync(fd);
    return {
      header: primary,
      metadata,
      deviceBytes: deviceBytes(st, root),
      identity: { block: st.isBlockDevice(), devno: devnoOf(st.rdev), dev: st.dev, ino: st.ino },
    };
  });
}

/** The verified primary header of `device` (secondary copy checked to agree). */
export function readLuks2Header(device: string): Luks2Header {
  return withDevice(device, (fd) => readHeaderPair(fd, device).primary);
}
