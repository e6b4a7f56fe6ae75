import * as fs from "node:fs";
import * as path from "node:path";
import * as zlib from "node:zlib";
import { describe, expect, it } from "vitest";
import { crc32, GPT_ROOT_X86_64, parseGptEntries, parseGptHeader } from "../../../platform/luks/gpt.ts";
import { guidFromBytes, guidToBytes } from "../../../platform/util/guid.ts";
import { ParseError } from "../../../platform/util/errors.ts";
import { prng } from "../../helpers/prng.ts";

const disk = new Uint8Array(fs.readFileSync(path.join(import.meta.dirname, "../../fixtures/unlock/gpt-root.bin")));
const lba1 = () => disk.slice(512, 1024);

describe("GPT codec", () => {
  it("crc32 matches zlib", () => {
    const r = prng(5);
    for (let i = 0; i < 50; i++) {
      const b = r.bytes(r.int(0, 300));
      expect(crc32(b)).toBe(zlib.crc32(b));
    }
  });

  it("GUID mixed-endian round trip", () => {
    expect(guidFromBytes(guidToBytes(GPT_ROOT_X86_64, "uefi"), "uefi")).toBe(GPT_ROOT_X86_64);
    expect(Buffer.from(guidToBytes(GPT_ROOT_X86_64, "uefi")).toString("hex")).toBe("e3bc684fcde8b14d96e7fbcaf984b709");
  });

  it("parses the table sgdisk wrote: ESP and an x86-64 root partition", () => {
    const h = parseGptHeader(lba1());
    expect(h.entryCount).toBe(128);
    expect(h.entrySize).toBe(128);
    const parts = parseGptEntries(h, disk.slice(1024, 1024 + 128 * 128));
    expect(parts.map((p) => [p.number, p.name, p.typeGuid])).toEqual([
      [1, "esp", "c12a7328-f81f-11d2-ba4b-00a0c93ec93b"],
      [2, "root", GPT_ROOT_X86_64],
    ]);
    expect(parts[1]!.uniqueGuid).toBe("11111111-2222-3333-4444-555555555555");
  });

  it("refuses bad CRCs and hostile sizes", () => {
    const h = lba1();
    h[40]! ^= 1; // inside the 92 checksummed bytes
    expect(() => parseGptHeader(h)).toThrow(/header_crc32/);
    const hdr = parseGptHeader(lba1());
    const arr = disk.slice(1024, 1024 + 128 * 128);
    arr[200]! ^= 1;
    expect(() => parseGptEntries(hdr, arr)).toThrow(/CRC-32/);
    const withCount = (n: number, size = 128) => {
      const b = lba1();
      const v = new DataView(b.buffer);
      v.setUint32(80, n, true);
      v.setUint32(84, size, true);
      v.setUint32(16, 0, true);
      v.setUint32(16, zlib.crc32(b.subarray(0, 92)), true);
      return b;
    };
    expect(() => parseGptHeader(withCount(0xffffffff))).toThrow(/number_of_partition_entries/);
    expect(() => parseGptHeader(withCount(4, 100))).toThrow(/size_of_partition_entry/);
    expect(() => parseGptHeader(withCount(4, 1 << 20))).toThrow(/size_of_partition_entry/);
  });

  it("property: random sectors are refused with a ParseError", () => {
    const r = prng(99);
    for (let i = 0; i < 200; i++) {
      const s = lba1();
      for (let k = 0; k < r.int(1, 4); k++) s[r.int(0, 91)] = r.int(0, 255);
      try {
        parseGptHeader(s);
      } catch (e) {
        expect(e).toBeInstanceOf(ParseError);
      }
    }
  });
});
