// The text decoders in platform/util/bytes.ts refuse non-canonical input with a ParseError that names
// the field and the offset of the first bad character, so no caller needs to re-wrap them.
import { describe, expect, it } from "vitest";
import { fromB64, fromB64url, fromHex } from "../../../platform/util/bytes.ts";
import { ParseError } from "../../../platform/util/errors.ts";
import { thrownBy } from "../../helpers/thrown.ts";

const parseErrorOf = (f: () => unknown) => thrownBy(f, ParseError);

describe("platform/util/bytes text decoders", () => {
  it("decode canonical input", () => {
    expect([...fromHex("00ffA0")]).toEqual([0, 255, 160]);
    expect([...fromB64("AP8=")]).toEqual([0, 255]);
    expect([...fromB64url("AP8")]).toEqual([0, 255]);
    expect(fromB64("").length).toBe(0);
  });

  it.each([
    ["hex: a bad character", () => fromHex("00zz", "pcr"), "pcr", 2, /not an even-length hex string/],
    ["hex: odd length", () => fromHex("abc", "pcr"), "pcr", 3, /not an even-length hex string/],
    ["base64: url alphabet", () => fromB64("ab-_", "quote"), "quote", 2, /not canonical padded base64/],
    ["base64: missing padding", () => fromB64("AP8", "quote"), "quote", 3, /not canonical padded base64/],
    ["base64url: padding", () => fromB64url("AP8=", "iv"), "iv", 3, /not unpadded base64url/],
    ["base64url: impossible length", () => fromB64url("AAAAA", "iv"), "iv", 5, /not unpadded base64url/],
  ])("%s → ParseError at the offending offset", (_name, decode, field, offset, problem) => {
    const e = parseErrorOf(decode);
    expect(e.field).toBe(field);
    expect(e.offset).toBe(offset);
    expect(e.structure).toBe("input");
    expect(e.kind).toBe("evidence");
    expect(e.message).toMatch(problem);
  });

  it("carries the caller's structure, error kind and hint", () => {
    const site = { structure: "resource JWE", kind: "decrypt" as const, hint: "check the KBS" };
    const e = parseErrorOf(() => fromB64url("a+b", "tag", site));
    expect(e.message).toBe("resource JWE: field 'tag' at offset 1 (0x1): not unpadded base64url");
    expect(e.kind).toBe("decrypt");
    expect(e.hint).toBe("check the KBS");
    expect(e.exitCode).toBe(11);
  });
});
