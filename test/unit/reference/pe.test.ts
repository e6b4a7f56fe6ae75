// The PE parser reads files the owner points at (or a .linux payload inside one): every cut or
// corrupted image must be a ParseError naming the field, never an exception from a typed array.
import * as fs from "node:fs";
import { describe, expect, it } from "vitest";
import { parsePe } from "../../../agent/reference/pe.ts";
import { measuredSections, stubVersion } from "../../../agent/reference/uki.ts";
import { ParseError } from "../../../platform/util/errors.ts";
import { prng } from "../../helpers/prng.ts";

const STUB = "/usr/lib/systemd/boot/efi/linuxx64.efi.stub";

describe.skipIf(!fs.existsSync(STUB))("PE parser on Debian's systemd-stub", () => {
  const stub = new Uint8Array(fs.readFileSync(STUB));

  it("reads the section table and the stub version", () => {
    const img = parsePe(stub);
    expect(img.sections.map((s) => s.name)).toContain(".sdmagic");
    expect(stubVersion(img)).toBeGreaterThanOrEqual(252);
  });

  it("every truncation is a ParseError or a valid shorter image", () => {
    for (let len = 0; len < 2048; len += 7) {
      try {
        parsePe(stub.subarray(0, len));
      } catch (e) {
        expect(e, `length ${len}`).toBeInstanceOf(ParseError);
      }
    }
  });

  it("random byte flips in the headers never escape as another error", () => {
    const rnd = prng(14);
    for (let i = 0; i < 500; i++) {
      const b = Uint8Array.from(stub.subarray(0, 4096));
      for (let k = 0; k < 4; k++) b[rnd.int(0, 1023)] = rnd.int(0, 255);
      try {
        parsePe(b);
      } catch (e) {
        expect(e).toBeInstanceOf(ParseError);
      }
    }
  });
});

describe("measured sections by stub version", () => {
  it("v252 measures the original set; .uname/.sbat from v254, .ucode from v256", () => {
    expect(measuredSections(252)).toEqual([".linux", ".osrel", ".cmdline", ".initrd", ".splash", ".dtb", ".pcrpkey"]);
    expect(measuredSections(254)).toContain(".sbat");
    expect(measuredSections(255)).not.toContain(".ucode");
    expect(measuredSections(256)).toContain(".ucode");
  });
});
