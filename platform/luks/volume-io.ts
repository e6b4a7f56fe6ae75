// Reading a LUKS2 header from a block device or image file: bounded reads (at most 2 x 4 MiB,
// plus the keyslot areas, inside a keyslots area of at most 128 MiB, for readLuks2Volume), both
// copies parsed and required to agree.
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
import { devnoOf, readSmall } from "./block-devices.ts";

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

/**
 * The metadata bytes cryptsetup reads, at their offsets: both headers (binary + JSON), then each
 * keyslot's area. The rest of the keyslots area is unused by cryptsetup and stays zero in a copy.
 */
export interface MetadataImage {
  /** 2 x hdr_size + keyslots_size: the length of a copy, so its layout equals the device's. */
  size: number;
  extents: { offset: number; bytes: Uint8Array }[];
}

/** A verified header with every metadata byte cryptsetup will read: what the agent checked is what it hands over. */
export interface Luks2Volume {
  header: Luks2Header;
  metadata: MetadataImage;
  /** Size of the device in bytes (for a block device from sysfs; for an image file its length). */
  deviceBytes: bigint;
  /** st_dev/st_ino of an image file, st_rdev of a block device: what the live mapping must sit on. */
  identity: { block: boolean; devno: string; dev: number; ino: number };
}

function deviceBytes(st: fs.Stats, root: string): bigint {
  if (!st.isBlockDevice()) return BigInt(st.size);
  const majMin = devnoOf(st.rdev);
  const text = readSmall(path.join(root, "sys/dev/block", majMin, "size"))?.trim() ?? "";
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
 * The verified header and the metadata cryptsetup reads (both headers and every keyslot area) in
 * one read session, for opening with a private copy (`cryptsetup open --header COPY`). `root` is
 * the platform root for sysfs.
 */
export function readLuks2Volume(device: string, root = "/"): Luks2Volume {
  return withDevice(device, (fd) => {
    const { primary, bytes } = readHeaderPair(fd, device);
    const layout = parseLuks2Layout(primary);
    const extents = [{ offset: 0, bytes }];
    for (const k of layout.keyslots) {
      const offset = Number(k.area.offset);
      extents.push({ offset, bytes: readExactly(fd, Number(k.area.size), offset, `keyslots.${k.id}.area`, device) });
    }
    const st = fs.fstatSync(fd);
    return {
      header: primary,
      metadata: { size: Number(layout.metadataBytes), extents },
      deviceBytes: deviceBytes(st, root),
      identity: { block: st.isBlockDevice(), devno: devnoOf(st.rdev), dev: st.dev, ino: st.ino },
    };
  });
}

/** The verified primary header of `device` (secondary copy checked to agree). */
export function readLuks2Header(device: string): Luks2Header {
  return withDevice(device, (fd) => readHeaderPair(fd, device).primary);
}
