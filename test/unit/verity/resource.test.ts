// The verity resource the KBS releases (agent/verity/resource.ts), the live-table check
// (table.ts) and the verity state file (state.ts): strict, bounded, errors naming the field.
import * as fs from "node:fs";
import * as path from "node:path";
import { describe, expect, it } from "vitest";
import {
  derivedPartUuid,
  encodeVerityResource,
  parseVerityResource,
  type VerityVolume,
} from "../../../agent/verity/resource.ts";
import { veritysetupOptions } from "../../../agent/verity/open.ts";
import { decodeVerityState, encodeVerityState } from "../../../agent/verity/state.ts";
import { effectiveParams, parseVeritySuperblock, rootBlockLocation } from "../../../agent/verity/superblock.ts";
import { parseDmVerityTable, tableCarriesHash, verityTableProblem } from "../../../agent/verity/table.ts";
import { CvmError } from "../../../platform/util/errors.ts";
import { thrownBy } from "../../helpers/thrown.ts";

const HASH = "4392fbd6e4a2c1fcd25bf5f5e7a9a5ca2e9f0f0b2b5d8dc2c1f1c0f5a6e7d8c9";
const doc = (vol: Record<string, unknown>, top: Record<string, unknown> = {}) =>
  new TextEncoder().encode(JSON.stringify({ v: 1, volumes: [{ name: "root", roothash: HASH, ...vol }], ...top }));
const refused = (bytes: Uint8Array) => thrownBy(() => parseVerityResource(bytes), CvmError);

describe("verity resource", () => {
  it("parses the documented shape; data/hash default to the Discoverable Partitions derivation", () => {
    const [v] = parseVerityResource(doc({ roothash: HASH.toUpperCase(), options: ["panic-on-corruption"] }));
    expect(v).toMatchObject({
      name: "root",
      roothash: HASH,
      hashAlg: "sha256",
      data: { derived: "data" },
      hash: { derived: "hash" },
      options: { corruption: "panic", superblock: true },
    });
    const [w] = parseVerityResource(
      doc({
        hash_alg: "sha512",
        roothash: "ab".repeat(64),
        data: "PARTLABEL=root-data",
        hash: "PARTUUID=0FC63DAF-8483-4772-8E79-3D69D8477DE4",
        options: [
          "superblock=false",
          "salt=00ff",
          "data-block-size=4096",
          "hash-block-size=4096",
          "format=1",
          "data-blocks=100",
          "restart-on-corruption",
        ],
      }),
    );
    expect(w!.data).toEqual({ partlabel: "root-data" });
    expect(w!.hash).toEqual({ partuuid: "0fc63daf-8483-4772-8e79-3d69d8477de4" });
    expect(veritysetupOptions(w!)).toEqual([
      "--restart-on-corruption",
      "--no-superblock",
      "--hash=sha512",
      "--salt=00ff",
      "--format=1",
      "--data-block-size=4096",
      "--hash-block-size=4096",
      "--data-blocks=100",
    ]);
  });

  it("round-trips through encodeVerityResource (what `verity format` prints)", () => {
    const vols = parseVerityResource(
      doc({ data: "PARTLABEL=d", options: ["panic-on-corruption", "hash-offset=1048576"] }),
    );
    expect(parseVerityResource(new TextEncoder().encode(encodeVerityResource(vols)))).toEqual(vols);
  });

  it("derives the partition UUIDs as systemd does: first and last 128 bits of the root hash", () => {
    expect(derivedPartUuid(HASH, "data")).toBe("4392fbd6-e4a2-c1fc-d25b-f5f5e7a9a5ca");
    expect(derivedPartUuid(HASH, "hash")).toBe("2e9f0f0b-2b5d-8dc2-c1f1-c0f5a6e7d8c9");
  });

  it("refuses options that weaken dm-verity, unknown options, and duplicates", () => {
    for (const o of ["ignore-corruption", "ignore-zero-blocks", "check-at-most-once"])
      expect(refused(doc({ options: [o] })).message).toMatch(new RegExp(`options\\[0\\]: ${o} lets corrupted`));
    // other spellings of the weakening options (dm's own underscores, case, spaces, a value) never pass
    for (const o of [
      "ignore_corruption",
      "IGNORE-CORRUPTION",
      " ignore-corruption",
      "ignore-corruption ",
      "ignore-zero-blocks=1",
    ])
      expect(refused(doc({ options: [o] })).message).toMatch(/options\[0\]: .*(refused|not an allowed option)/);
    expect(refused(doc({ options: ["fec-device=/dev/vdb"] })).message).toMatch(/"fec-device" is not an allowed option/);
    expect(refused(doc({ options: ["panic-on-corruption", "restart-on-corruption"] })).message).toMatch(/twice/);
    expect(refused(doc({ options: ["data-block-size=1000"] })).message).toMatch(/power of two/);
    expect(refused(doc({ options: ["hash-offset=100"] })).message).toMatch(/multiple of 512/);
    expect(refused(doc({ options: ["superblock=false"] })).message).toMatch(/needs salt=/);
    expect(refused(doc({ options: ["salt=xyz"] })).message).toMatch(/salt must be hex/);
    expect(refused(doc({ options: ["panic-on-corruption=1"] })).message).toMatch(/takes no value/);
  });

  it("refuses a hash of the wrong length for its algorithm, a null derived UUID, bad selectors and names", () => {
    expect(refused(doc({ roothash: HASH.slice(2) })).message).toMatch(/volumes\[0\]\.roothash: must be 64 hex digits/);
    expect(refused(doc({ hash_alg: "sha512" })).message).toMatch(/must be 128 hex digits \(sha512\)/);
    expect(refused(doc({ hash_alg: "sha1", roothash: "ab".repeat(20) })).message).toMatch(/hash_alg: must be one of/);
    expect(refused(doc({ roothash: "0".repeat(32) + HASH.slice(32) })).message).toMatch(/null partition UUID/);
    expect(refused(doc({ data: "/dev/vda2" })).message).toMatch(/data: .* neither PARTLABEL/);
    expect(refused(doc({ hash: "PARTUUID=nope" })).message).toMatch(/hash: PARTUUID= needs a UUID/);
    expect(refused(doc({ name: "../x" })).message).toMatch(/name: must be a device-mapper name/);
    expect(refused(doc({ name: "usr" })).message).toMatch(/no volume named "root"/);
    expect(refused(doc({ extra: 1 })).message).toMatch(/volumes\[0\]\.extra: unknown key/);
  });

  it("refuses other versions, duplicates, too many volumes, oversized documents, non-JSON, bad base64", () => {
    expect(refused(doc({}, { v: 2 })).message).toMatch(/v: must be 1/);
    expect(refused(doc({}, { epoch: 3 })).message).toMatch(/epoch: unknown key/);
    const two = {
      v: 1,
      volumes: [
        { name: "root", roothash: HASH },
        { name: "root", roothash: HASH },
      ],
    };
    expect(refused(new TextEncoder().encode(JSON.stringify(two))).message).toMatch(/appears twice/);
    const many = { v: 1, volumes: Array.from({ length: 5 }, (_, i) => ({ name: `v${i}`, roothash: HASH })) };
    expect(refused(new TextEncoder().encode(JSON.stringify(many))).message).toMatch(/1\.\.4 volumes/);
    expect(refused(new Uint8Array(70_000)).message).toMatch(/over the 65536-byte limit/);
    expect(refused(new Uint8Array([0xff, 0xfe])).message).toMatch(/not UTF-8 JSON/);
    expect(refused(doc({ signature_p7s_b64: "a$==" })).message).toMatch(/not canonical base64/);
    expect(refused(doc({ signature_p7s_b64: "A".repeat(30_000) })).message).toMatch(/at most 16384 bytes/);
  });
});

describe("live dm-verity table", () => {
  const [vol] = parseVerityResource(doc({ options: ["panic-on-corruption", "data-block-size=4096"] })) as [
    VerityVolume,
  ];
  const line = (opts = "1 panic_on_corruption", digest = HASH) =>
    `0 65536 verity 1 254:2 254:3 4096 4096 8192 1 sha256 ${digest} 0011 ${opts}\n`;
  const devices = { data: "254:2", hash: "254:3" };
  const problem = (text: string) => {
    const t = parseDmVerityTable(text);
    return typeof t === "string" ? t : verityTableProblem(t, vol, devices);
  };

  it("accepts the table veritysetup makes for the resource", () => {
    expect(problem(line())).toBeUndefined();
    expect(problem(line("3 panic_on_corruption root_hash_sig_key_desc 5:x"))).toBeUndefined();
    expect(tableCarriesHash(line(), HASH)).toBeUndefined();
  });

  it("refuses another hash, other devices, a weakened or missing corruption mode, extra targets", () => {
    expect(problem(line(undefined, "ab".repeat(32)))).toMatch(/root hash .* is not the one the KBS released/);
    expect(verityTableProblem(parseDmVerityTable(line()) as never, vol, { data: "8:1", hash: "254:3" })).toMatch(
      /data device 254:2 is not 8:1/,
    );
    expect(problem(line("2 panic_on_corruption ignore_zero_blocks"))).toMatch(/ignore_zero_blocks is not allowed/);
    expect(problem(line("1 restart_on_corruption"))).toMatch(/corruption mode restart_on_corruption is not panic/);
    expect(problem(line(""))).toMatch(/corruption mode eio is not panic/);
    expect(problem(line().replace("4096 4096", "512 4096"))).toMatch(/data block size 512 is not 4096/);
    expect(problem(line() + line())).toMatch(/2 targets/);
    expect(problem(line().replace("verity", "linear"))).toMatch(/not verity/);
    expect(problem(line("3 panic_on_corruption"))).toMatch(/count does not match/);
    expect(tableCarriesHash(line("1 ignore_corruption"), HASH)).toMatch(/ignore_corruption is not allowed/);
    expect(tableCarriesHash(line(), "ab".repeat(32))).toMatch(/is not the one cvm-unlock opened it with/);
  });
});

describe("verity state file", () => {
  it("round-trips and refuses anything else", () => {
    const s = [{ name: "root", roothash: HASH }];
    expect(decodeVerityState(encodeVerityState(s), "f")).toEqual(s);
    for (const bad of [
      "{",
      "[]",
      '{"version":2,"volumes":[]}',
      `{"version":1,"volumes":[{"name":"root","roothash":"XY"}]}`,
      `{"version":1,"volumes":[{"name":"root","roothash":"${HASH}","x":1}]}`,
    ])
      expect(thrownBy(() => decodeVerityState(bad, "f"), CvmError).kind).toBe("volume");
  });
});

describe("dm-verity superblock (veritysetup format output)", () => {
  const sb = new Uint8Array(fs.readFileSync(path.join(import.meta.dirname, "../../fixtures/verity/superblock.bin")));

  it("parses what cryptsetup 2.6 wrote and places the top hash block after it", () => {
    const p = parseVeritySuperblock(sb);
    expect(p).toEqual({
      hashType: 1,
      algorithm: "sha256",
      dataBlockSize: 4096,
      hashBlockSize: 4096,
      dataBlocks: 256n,
      salt: "00112233",
    });
    // 256 data blocks, 128 digests per hash block: two levels, the top one first, after the superblock's block
    expect(rootBlockLocation(p, 0, true)).toEqual({ device: "hash", offset: 4096, size: 4096 });
    expect(rootBlockLocation(p, 1 << 20, true)).toEqual({ device: "hash", offset: (1 << 20) + 4096, size: 4096 });
    expect(rootBlockLocation({ ...p, dataBlocks: 1n }, 0, true)).toEqual({ device: "data", offset: 0, size: 4096 });
    expect(rootBlockLocation(p, 8192, false)).toEqual({ device: "hash", offset: 8192, size: 4096 });
  });

  it("refuses a foreign signature, version, algorithm name, block size, salt size; states must agree with the resource", () => {
    const bad = (off: number, v: number) => {
      const b = new Uint8Array(sb);
      b[off] = v;
      return thrownBy(() => parseVeritySuperblock(b), CvmError).message;
    };
    expect(bad(0, 0x56)).toMatch(/signature/);
    expect(bad(8, 2)).toMatch(/version 2 is not 1/);
    expect(bad(32, 0x2f)).toMatch(/algorithm/);
    expect(bad(65, 0x11)).toMatch(/data_block_size/);
    expect(bad(81, 0x02)).toMatch(/salt_size/);
    expect(thrownBy(() => parseVeritySuperblock(sb.subarray(0, 100)), CvmError).kind).toBe("volume");
    const [v] = parseVerityResource(doc({ options: ["salt=ff", "data-block-size=4096"] })) as [VerityVolume];
    expect(effectiveParams(v, parseVeritySuperblock(sb))).toBe("the salt is not the resource's");
    const [w] = parseVerityResource(doc({ hash_alg: "sha512", roothash: "ab".repeat(64) })) as [VerityVolume];
    expect(effectiveParams(w, parseVeritySuperblock(sb))).toMatch(/uses sha256, the resource says sha512/);
  });
});
