import { createHash } from "node:crypto";
import * as fs from "node:fs";
import * as path from "node:path";
import { describe, expect, it } from "vitest";
import { checkHeaderPair, parseLuks2Header, peekHeaderSize } from "../../../platform/luks/luks2-header.ts";
import { CvmError, ParseError } from "../../../platform/util/errors.ts";
import { prng } from "../../helpers/prng.ts";

const FIX = path.join(import.meta.dirname, "../../fixtures/unlock");
const image = new Uint8Array(fs.readFileSync(path.join(FIX, "luks2-header.bin")));
const HDR = 16384;
const primary = () => image.slice(0, HDR);
const secondary = () => image.slice(HDR, 2 * HDR);

/** Recompute the checksum the way cryptsetup does: SHA-256 over hdr_size bytes with csum zeroed. */
function reseal(buf: Uint8Array): Uint8Array {
  const b = buf.slice();
  b.fill(0, 448, 512);
  b.set(createHash("sha256").update(b).digest(), 448);
  return b;
}

function setJson(buf: Uint8Array, text: string): Uint8Array {
  const b = buf.slice();
  b.fill(0, 4096);
  b.set(Buffer.from(text, "utf8"), 4096);
  return reseal(b);
}

describe("LUKS2 header codec", () => {
  it("parses a header written by cryptsetup 2.6 (UUID, label, seqid, JSON, token)", () => {
    const h = parseLuks2Header(primary());
    expect(h.uuid).toBe("6d1e7c52-2b4f-4d3e-9a51-0c3b8f2e7a10");
    expect(h.label).toBe("fixture-root");
    expect(h.hdrSize).toBe(HDR);
    expect(h.json.config.json_size).toBe("12288");
    expect(Object.keys(h.json.keyslots)).toEqual(["0"]);
    expect([...h.tokens.values()].map((t) => t.type)).toEqual(["cvm-unlock"]);
    const s = parseLuks2Header(secondary(), "secondary");
    expect(s.uuid).toBe(h.uuid);
    expect(() => checkHeaderPair(h, s)).not.toThrow();
    expect(peekHeaderSize(image.subarray(0, 4096))).toBe(HDR);
  });

  it("rejects a flipped bit anywhere in the checksummed area", () => {
    for (const at of [20, 30, 200, 600, 4100, 9000, HDR - 1]) {
      const b = primary();
      b[at]! ^= 0x01;
      expect(() => parseLuks2Header(b), `offset ${at}`).toThrow(ParseError);
    }
    const b = primary();
    b[4100]! ^= 1;
    expect(() => parseLuks2Header(b)).toThrow(/csum.*checksum does not match/);
  });

  it("names the field for wrong magic, version, hdr_size and hdr_offset", () => {
    const cases: [number, number[], RegExp][] = [
      [0, [0x4c, 0x55, 0x4b, 0x53, 0xba, 0xbf], /magic/],
      [6, [0, 1], /version.*only LUKS2/],
      [8, [0, 0, 0, 0, 0, 0, 0x50, 0], /hdr_size/],
      [8, [0x80, 0, 0, 0, 0, 0, 0x40, 0], /hdr_size/],
      [256, [0, 0, 0, 0, 0, 0, 0x40, 0], /hdr_offset/],
    ];
    for (const [at, bytes, re] of cases) {
      const b = primary();
      b.set(bytes, at);
      expect(() => parseLuks2Header(reseal(b))).toThrow(re);
    }
    expect(() => parseLuks2Header(primary(), "secondary")).toThrow(/magic/);
  });

  it("rejects a UUID or label that is not NUL-terminated or not text", () => {
    const b = primary();
    b.fill(0x41, 168, 208);
    expect(() => parseLuks2Header(reseal(b))).toThrow(/uuid.*NUL-terminated/);
    const c = primary();
    c.set(Buffer.from("not-a-uuid\0"), 168);
    expect(() => parseLuks2Header(reseal(c))).toThrow(/uuid.*not a UUID/);
    const d = primary();
    d[24] = 0x07;
    expect(() => parseLuks2Header(reseal(d))).toThrow(/label.*control/);
  });

  it("parses the JSON area strictly", () => {
    const json = JSON.parse(parseLuks2Header(primary()).jsonText);
    const bad: [unknown, RegExp][] = [
      [{ ...json, extra: {} }, /unknown top-level section/],
      [{ ...json, config: { ...json.config, json_size: "999" } }, /json_size/],
      [{ ...json, segments: {} }, /no data segment/],
      [{ ...json, tokens: { x: { type: "a", keyslots: [] } } }, /not a decimal/],
      [{ ...json, tokens: { "0": { type: "a", keyslots: [1] } } }, /keyslots/],
      [{ ...json, digests: { "0": { ...json.digests["0"], segments: "0" } } }, /segments/],
      [[1, 2], /not an object/],
    ];
    for (const [doc, re] of bad) expect(() => parseLuks2Header(setJson(primary(), JSON.stringify(doc)))).toThrow(re);
    expect(() => parseLuks2Header(setJson(primary(), "{not json"))).toThrow(/not valid JSON/);
    const full = primary();
    full.fill(0x20, 4096);
    expect(() => parseLuks2Header(reseal(full))).toThrow(/not NUL-terminated/);
  });

  it("refuses primary/secondary copies that disagree", () => {
    const p = parseLuks2Header(primary());
    const s2 = secondary();
    s2.set(Buffer.from("6d1e7c52-2b4f-4d3e-9a51-0c3b8f2e7a11"), 168);
    expect(() => checkHeaderPair(p, parseLuks2Header(reseal(s2), "secondary"))).toThrow(/disagree/);
    const s3 = secondary();
    s3[23] = 99; // seqid low byte
    expect(() => checkHeaderPair(p, parseLuks2Header(reseal(s3), "secondary"))).toThrow(/seqid/);
  });

  it("property: random corruption of a resealed header yields a header or a ParseError, never anything else", () => {
    const seed = 0x1a2b3c;
    const r = prng(seed);
    let parsed = 0;
    let refused = 0;
    for (let i = 0; i < 400; i++) {
      const b = primary();
      const n = r.int(1, 6);
      for (let k = 0; k < n; k++) {
        // Bias towards the fixed fields and the JSON text.
        const at = r.bool() ? r.int(0, 511) : r.int(4096, 4096 + 1500);
        b[at] = r.int(0, 255);
      }
      const input = r.bool() ? reseal(b) : b;
      const cut = r.int(0, 9) === 0 ? input.subarray(0, r.int(0, HDR)) : input;
      try {
        const h = parseLuks2Header(cut);
        expect(h.hdrSize).toBe(HDR);
        expect(h.uuid).toMatch(/^[0-9a-f-]{36}$/);
        parsed++;
      } catch (e) {
        if (!(e instanceof ParseError)) throw new Error(`seed ${seed} case ${i}: ${String(e)}`);
        expect(e).toBeInstanceOf(CvmError);
        refused++;
      }
    }
    expect(parsed + refused).toBe(400);
    expect(refused).toBeGreaterThan(100);
  });

  it("property: random bytes never parse", () => {
    const r = prng(77);
    for (let i = 0; i < 200; i++) expect(() => parseLuks2Header(r.bytes(r.int(0, 5000)))).toThrow(ParseError);
  });
});
