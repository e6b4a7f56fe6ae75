// The parts of a PE/COFF image (EFI application, UKI) that firmware and systemd-stub measure:
// the section table, and the Authenticode image hash (the digest of an EV_EFI_BOOT_SERVICES_APPLICATION
// event in PCR 4, "Windows Authenticode Portable Executable Signature Format" §"Calculating the PE
// Image Hash"). Pure and bounded: the file is whatever the owner points at.
import { sha256 } from "@noble/hashes/sha2.js";
import { ParseError } from "../../platform/util/errors.ts";

export interface PeSection {
  name: string;
  virtualSize: number;
  virtualAddress: number;
  rawSize: number;
  rawOffset: number;
}

export interface PeImage {
  bytes: Uint8Array;
  sections: PeSection[];
  /** Offsets of the fields Authenticode skips. */
  checksumOffset: number;
  certDirOffset: number;
  sizeOfHeaders: number;
  cert: { offset: number; size: number };
}

const MAX_SECTIONS = 96;
/** A section is loaded (and measured) at VirtualSize bytes: bound it before allocating that much. */
const MAX_SECTION_BYTES = 1024 * 1024 * 1024;

function fail(field: string, offset: number, problem: string): never {
  throw new ParseError("PE image", field, offset, problem);
}

export function parsePe(bytes: Uint8Array): PeImage {
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const need = (off: number, len: number, field: string) => {
    if (off < 0 || off + len > bytes.length) fail(field, off, `needs ${len} bytes, the file has ${bytes.length}`);
  };
  need(0, 64, "DOS header");
  if (bytes[0] !== 0x4d || bytes[1] !== 0x5a) fail("e_magic", 0, "not MZ");
  const pe = dv.getUint32(0x3c, true);
  need(pe, 24, "PE header");
  if (dv.getUint32(pe, true) !== 0x00004550) fail("Signature", pe, "not PE\\0\\0");
  const nsec = dv.getUint16(pe + 6, true);
  const optSize = dv.getUint16(pe + 20, true);
  if (nsec === 0 || nsec > MAX_SECTIONS) fail("NumberOfSections", pe + 6, `${nsec} is not 1..${MAX_SECTIONS}`);
  const opt = pe + 24;
  need(opt, optSize, "optional header");
  const magic = dv.getUint16(opt, true);
  if (magic !== 0x10b && magic !== 0x20b) fail("Magic", opt, `0x${magic.toString(16)} is neither PE32 nor PE32+`);
  const dirs = opt + (magic === 0x20b ? 112 : 96);
  const ndirs = dv.getUint32(dirs - 4, true);
  const certDirOffset = dirs + 4 * 8;
  if (ndirs < 5 || certDirOffset + 8 > opt + optSize)
    fail("NumberOfRvaAndSizes", dirs - 4, "no certificate table entry");
  const sizeOfHeaders = dv.getUint32(opt + 60, true);
  const secTable = opt + optSize;
  need(secTable, nsec * 40, "section table");
  if (sizeOfHeaders < secTable + nsec * 40 || sizeOfHeaders > bytes.length)
    fail("SizeOfHeaders", opt + 60, `${sizeOfHeaders} does not cover the section table or exceeds the file`);
  const sections: PeSection[] = [];
  for (let i = 0; i < nsec; i++) {
    const s = secTable + i * 40;
    const rawName = bytes.subarray(s, s + 8);
    const end = rawName.indexOf(0);
    const sec: PeSection = {
      name: new TextDecoder("latin1").decode(rawName.subarray(0, end === -1 ? 8 : end)),
      virtualSize: dv.getUint32(s + 8, true),
      virtualAddress: dv.getUint32(s + 12, true),
      rawSize: dv.getUint32(s + 16, true),
      rawOffset: dv.getUint32(s + 20, true),
    };
    if (sec.virtualSize > MAX_SECTION_BYTES)
      fail(`sections[${i}] (${sec.name}).VirtualSize`, s + 8, `${sec.virtualSize} is over ${MAX_SECTION_BYTES}`);
    if (sec.rawSize > 0 && sec.rawOffset + sec.rawSize > bytes.length)
      fail(`sections[${i}] (${sec.name}).SizeOfRawData`, s + 16, "runs past the end of the file");
    sections.push(sec);
  }
  const cert = { offset: dv.getUint32(certDirOffset, true), size: dv.getUint32(certDirOffset + 4, true) };
  if (cert.size > 0 && (cert.offset < sizeOfHeaders || cert.offset + cert.size > bytes.length))
    fail("certificate table", certDirOffset, "outside the file");
  return { bytes, sections, checksumOffset: opt + 64, certDirOffset, sizeOfHeaders, cert };
}

/** SHA-256 Authenticode hash: headers without CheckSum and the certificate entry, sections by file offset, trailing data without the certificates. */
export function authenticodeSha256(img: PeImage): Uint8Array {
  const h = sha256.create();
  const b = img.bytes;
  h.update(b.subarray(0, img.checksumOffset));
  h.update(b.subarray(img.checksumOffset + 4, img.certDirOffset));
  h.update(b.subarray(img.certDirOffset + 8, img.sizeOfHeaders));
  let hashed = img.sizeOfHeaders;
  for (const s of [...img.sections].filter((s) => s.rawSize > 0).sort((a, c) => a.rawOffset - c.rawOffset)) {
    h.update(b.subarray(s.rawOffset, s.rawOffset + s.rawSize));
    hashed += s.rawSize;
  }
  const extraEnd = b.length - img.cert.size;
  if (extraEnd > hashed) h.update(b.subarray(hashed, extraEnd));
  return h.digest();
}

/** A section's bytes as loaded in memory: raw data, zero-filled (or cut) to VirtualSize. */
export function sectionData(img: PeImage, s: PeSection): Uint8Array {
  const out = new Uint8Array(s.virtualSize);
  out.set(img.bytes.subarray(s.rawOffset, s.rawOffset + Math.min(s.rawSize, s.virtualSize)));
  return out;
}
