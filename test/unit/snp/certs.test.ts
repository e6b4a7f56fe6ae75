import { describe, expect, it } from "vitest";
import { CERT_GUIDS, encodeCertTable, parseCertTable } from "../../../platform/snp/certs.ts";
import { guidFromBytes, guidToBytes } from "../../../platform/util/guid.ts";
import { ParseError } from "../../../platform/util/errors.ts";
import { thrownBy } from "../../helpers/thrown.ts";

const a = new Uint8Array(100).fill(0xaa);
const b = new Uint8Array(50).fill(0xbb);
const OTHER = "ecae0c0f-9502-43b1-afa2-0ae2e0d565b6";

const errorOf = (f: () => unknown) => thrownBy(f, ParseError);

describe("SNP certificate table", () => {
  it("parses GUIDs in RFC-4122 byte order to VCEK/VLEK/ASK/ARK/CRL/OTHER", () => {
    const t = encodeCertTable([
      { guid: CERT_GUIDS.VCEK, data: a },
      { guid: CERT_GUIDS.ASK, data: b },
      { guid: CERT_GUIDS.ARK, data: b },
      { guid: CERT_GUIDS.VLEK, data: a },
      { guid: CERT_GUIDS.CRL, data: b },
      { guid: OTHER, data: a },
    ]);
    expect(Array.from(t.subarray(0, 4))).toEqual([0x63, 0xda, 0x75, 0x8d]);
    const e = parseCertTable(t);
    expect(e.map((x) => x.type)).toEqual(["VCEK", "ASK", "ARK", "VLEK", "CRL", { OTHER }]);
    expect(e[0]!.offset).toBe(7 * 24);
    expect(e[0]!.data).toEqual(a);
    expect(e[1]!.data).toEqual(b);
  });

  it("empty and all-zero buffers are an empty table; zero padding after the certs is fine", () => {
    expect(parseCertTable(new Uint8Array(0))).toEqual([]);
    expect(parseCertTable(new Uint8Array(16384))).toEqual([]);
    expect(parseCertTable(encodeCertTable([{ guid: CERT_GUIDS.VCEK, data: a }], 16384))).toHaveLength(1);
  });

  it("an entry pointing outside the buffer names the entry and its offset field", () => {
    const t = encodeCertTable([
      { guid: CERT_GUIDS.VCEK, data: a },
      { guid: CERT_GUIDS.ASK, data: b },
    ]);
    const e = errorOf(() => parseCertTable(t.subarray(0, t.length - 1)));
    expect(e.field).toBe("entry[1] (ASK)");
    expect(e.offset).toBe(24 + 16);
    expect(e.message).toMatch(/outside the \d+-byte buffer/);
  });

  it("an offset into the entry table, a zero length, duplicates, a missing terminator are errors", () => {
    const t = encodeCertTable([{ guid: CERT_GUIDS.VCEK, data: a }]);
    const into = t.slice();
    new DataView(into.buffer).setUint32(16, 8, true);
    expect(errorOf(() => parseCertTable(into)).message).toMatch(/points into the entry table/);
    const zero = t.slice();
    new DataView(zero.buffer).setUint32(20, 0, true);
    expect(errorOf(() => parseCertTable(zero)).message).toMatch(/zero-length/);
    const dup = encodeCertTable([
      { guid: CERT_GUIDS.VCEK, data: a },
      { guid: CERT_GUIDS.VCEK, data: b },
    ]);
    expect(errorOf(() => parseCertTable(dup)).message).toMatch(/duplicate GUID/);
    const noTerm = t.slice(0, 24);
    expect(errorOf(() => parseCertTable(noTerm)).message).toMatch(/without the all-zero terminating entry/);
    const badTerm = t.slice();
    badTerm[24 + 20] = 1;
    expect(errorOf(() => parseCertTable(badTerm)).message).toMatch(/not a terminator/);
  });

  it("a table of endless entries stops at the entry limit", () => {
    const many = encodeCertTable(
      Array.from({ length: 70 }, (_, i) => ({
        guid: `00000000-0000-0000-0000-${String(i + 1).padStart(12, "0")}`,
        data: b,
      })),
    );
    expect(errorOf(() => parseCertTable(many)).message).toMatch(/more than 64 entries/);
  });
});

describe("platform/util/guid", () => {
  it("round-trips both byte orders and rejects malformed GUIDs", () => {
    const g = CERT_GUIDS.VCEK;
    expect(Buffer.from(guidToBytes(g, "rfc4122")).toString("hex")).toBe(g.replace(/-/g, ""));
    // UEFI order swaps the first three groups (the GPT root type GUID's on-disk bytes)
    expect(Buffer.from(guidToBytes("4f68bce3-e8cd-4db1-96e7-fbcaf984b709", "uefi")).toString("hex")).toBe(
      "e3bc684fcde8b14d96e7fbcaf984b709",
    );
    for (const order of ["rfc4122", "uefi"] as const) expect(guidFromBytes(guidToBytes(g, order), order)).toBe(g);
    expect(() => guidToBytes("not-a-guid", "rfc4122")).toThrow(ParseError);
    expect(() => guidToBytes("not-a-guid", "rfc4122")).toThrow(/GUID: field 'guid' .*not a dashed GUID: "not-a-guid"/);
    expect(() => guidFromBytes(new Uint8Array(15), "uefi")).toThrow(ParseError);
    expect(() => guidFromBytes(new Uint8Array(15), "uefi")).toThrow(/a GUID is 16 bytes, got 15/);
  });
});
