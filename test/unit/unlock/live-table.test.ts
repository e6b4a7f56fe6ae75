// The post-open comparison of the live dm-crypt table with the verified header, on dmsetup outputs
// as the kernel writes them (this host has no device-mapper; test/integration/unlock-hostile.test.ts
// drives the same code through the binary with a stand-in dmsetup).
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { describe, expect, it } from "vitest";
import { verifyHeaderPolicy } from "../../../agent/unlock/header-policy.ts";
import {
  expectedMapping,
  liveTableDifferences,
  parseDmCryptTable,
  type DmCryptTable,
} from "../../../agent/unlock/live-table.ts";
import { luksAllowSchema } from "../../../agent/config/unlock-schema.ts";
import { writeHeaderCopy } from "../../../agent/unlock/open-verified.ts";
import { parseLuks2Header } from "../../../platform/luks/luks2-header.ts";
import type { Luks2Volume } from "../../../platform/luks/volume-io.ts";

const FIX = path.join(import.meta.dirname, "../../fixtures/unlock");
const header = parseLuks2Header(new Uint8Array(fs.readFileSync(path.join(FIX, "luks2-header.bin")).subarray(0, 16384)));
const verified = verifyHeaderPolicy(header, luksAllowSchema.parse({}, "luks_allow"), "/dev/vda2");
// A 20 MiB block device 252:2: 16 MiB of metadata, 4 MiB = 8192 sectors of data.
const volume: Luks2Volume = {
  header,
  metadata: { size: 0, extents: [] },
  deviceBytes: 20n * 1024n * 1024n,
  identity: { block: true, devno: "252:2", dev: 0, ino: 0 },
};
const GOOD =
  "0 8192 crypt aes-xts-plain64 :64:logon:cryptsetup:6d1e7c52-2b4f-4d3e-9a51-0c3b8f2e7a10-d0 0 252:2 32768 2 sector_size:4096 iv_large_sectors\n";

function table(text: string): DmCryptTable {
  const t = parseDmCryptTable(text);
  if (typeof t === "string") throw new Error(t);
  return t;
}

describe("live dm-crypt table after open", () => {
  it("accepts the table cryptsetup makes from the verified header (keyring key or masked hex key)", () => {
    expect(liveTableDifferences(table(GOOD), expectedMapping(verified, volume), "/")).toEqual([]);
    const masked = GOOD.replace(/:64:logon:\S+/, "0".repeat(128));
    expect(table(masked).keyBytes).toBe(64);
    expect(liveTableDifferences(table(masked), expectedMapping(verified, volume), "/")).toEqual([]);
  });

  const differences: [string, string, RegExp][] = [
    [
      "cipher_null",
      GOOD.replace("aes-xts-plain64", "cipher_null-ecb"),
      /cipher is cipher_null-ecb, verified aes-xts-plain64/,
    ],
    ["ecb", GOOD.replace("aes-xts-plain64", "aes-ecb"), /cipher is aes-ecb/],
    ["key size", GOOD.replace(":64:", ":32:"), /key size \(bits\) is 256, verified 512/],
    ["offset", GOOD.replace(" 32768 ", " 0 "), /data offset \(sectors\) is 0, verified 32768/],
    ["device", GOOD.replace("252:2", "252:3"), /backing device 252:3 is not the verified 252:2/],
    ["length", GOOD.replace("0 8192", "0 16384"), /length \(sectors\) is 16384, verified 8192/],
    ["sector size", GOOD.replace("2 sector_size:4096 iv_large_sectors", ""), /sector size is 512, verified 4096/],
    [
      "discards",
      GOOD.replace("2 sector_size:4096 iv_large_sectors", "2 sector_size:4096 allow_discards"),
      /unexpected option "allow_discards"/,
    ],
    ["iv offset", GOOD.replace("-d0 0 252", "-d0 9 252"), /iv offset is 9, verified 0/],
  ];
  for (const [name, text, re] of differences)
    it(`notices a different ${name}`, () => {
      expect(liveTableDifferences(table(text), expectedMapping(verified, volume), "/").join("; ")).toMatch(re);
    });

  it("accepts allow_discards only when the trusted configuration asked for it (crypttab discard)", () => {
    const discards = GOOD.replace(
      "2 sector_size:4096 iv_large_sectors",
      "3 allow_discards sector_size:4096 iv_large_sectors",
    );
    const want = expectedMapping(verified, volume);
    expect(liveTableDifferences(table(discards), want, "/", ["allow_discards"])).toEqual([]);
    expect(liveTableDifferences(table(discards), want, "/").join()).toMatch(/unexpected option "allow_discards"/);
  });

  it("refuses anything that is not exactly one well-formed crypt target", () => {
    expect(parseDmCryptTable("")).toMatch(/0 targets/);
    expect(parseDmCryptTable(GOOD + GOOD)).toMatch(/2 targets/);
    expect(parseDmCryptTable("0 8192 linear 252:2 0\n")).toMatch(/not crypt/);
    expect(parseDmCryptTable("0 8192 crypt aes-xts-plain64 zz 0 252:2 32768\n")).toMatch(/key field/);
    expect(parseDmCryptTable("0 8192 crypt aes-xts-plain64 00 0 252:2 32768 3 a\n")).toMatch(/count/);
    expect(parseDmCryptTable("0 8192 crypt aes-xts-plain64 00 0 /dev/vda 32768\n")).toMatch(/MAJ:MIN/);
  });

  it("an image file must be the backing file of the loop device in the table", () => {
    const root = fs.mkdtempSync(path.join(os.tmpdir(), "live-table-"));
    const img = path.join(root, "disk.img");
    fs.writeFileSync(img, "x");
    const st = fs.statSync(img);
    const fileVolume: Luks2Volume = { ...volume, identity: { block: false, devno: "0:0", dev: st.dev, ino: st.ino } };
    fs.mkdirSync(path.join(root, "sys/dev/block/7:0/loop"), { recursive: true });
    fs.writeFileSync(path.join(root, "sys/dev/block/7:0/loop/backing_file"), img + "\n");
    const onLoop = GOOD.replace("252:2", "7:0");
    expect(liveTableDifferences(table(onLoop), expectedMapping(verified, fileVolume), root)).toEqual([]);
    const other = path.join(root, "other.img");
    fs.writeFileSync(other, "y");
    fs.writeFileSync(path.join(root, "sys/dev/block/7:0/loop/backing_file"), other + "\n");
    expect(liveTableDifferences(table(onLoop), expectedMapping(verified, fileVolume), root).join()).toMatch(
      /backing device 7:0/,
    );
    fs.rmSync(root, { recursive: true, force: true });
  });
});

describe("the private header copy", () => {
  it("is a 0600 file of the metadata size with the extents at their offsets; an unusable directory is a clear error", () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "header-copy-"));
    const f = writeHeaderCopy(dir, {
      size: 65536,
      extents: [
        { offset: 0, bytes: Buffer.from("LUKS") },
        { offset: 32768, bytes: Buffer.from("slot") },
      ],
    });
    const st = fs.statSync(f);
    expect(st.mode & 0o777).toBe(0o600);
    expect(st.size).toBe(65536);
    const b = fs.readFileSync(f);
    expect(b.subarray(0, 4).toString()).toBe("LUKS");
    expect(b.subarray(32768, 32772).toString()).toBe("slot");
    expect(b.subarray(4, 32768).every((x) => x === 0)).toBe(true);
    const blocked = path.join(dir, "not-a-dir");
    fs.writeFileSync(blocked, "");
    expect(() => writeHeaderCopy(blocked, { size: 1, extents: [] })).toThrow(/cannot create the private header copy/);
    fs.rmSync(dir, { recursive: true, force: true });
  });
});
