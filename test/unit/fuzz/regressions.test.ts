// Inputs the fuzzer once crashed a parser with (test/fixtures/fuzz/regressions/<target>/), replayed
// through their target: each must now be accepted or refused with the typed error.
import * as fs from "node:fs";
import * as path from "node:path";
import { describe, expect, it } from "vitest";
import { checkPins } from "../../../agent/unlock/key-document.ts";
import { parseMountinfo } from "../../../agent/unlock/verify-root.ts";
import { parseLuks2Header } from "../../../platform/luks/luks2-header.ts";
import { vekPublicKey } from "../../../platform/snp/verify.ts";
import { CvmError } from "../../../platform/util/errors.ts";
import { describeError, execute } from "../../fuzz/engine.ts";
import { findTarget } from "../../fuzz/targets.ts";
import { thrownBy } from "../../helpers/thrown.ts";

const DIR = path.join(import.meta.dirname, "../../fixtures/fuzz/regressions");

describe("fuzzer regressions", () => {
  for (const target of fs.readdirSync(DIR)) {
    for (const file of fs.readdirSync(path.join(DIR, target))) {
      it(`${target}/${file}`, async () => {
        const t = findTarget(target);
        await t.seeds();
        const outcome = await execute(t, new Uint8Array(fs.readFileSync(path.join(DIR, target, file))));
        expect(outcome.kind === "crash" ? describeError(outcome.error).detail : outcome.kind).not.toMatch(/Error/);
      });
    }
  }

  it("mountinfo: a line that ends at the '-' separator is malformed, not a TypeError", () => {
    expect(() => parseMountinfo("22 1 253:0 / /sysroot rw,relatime shared:1 opt:2 -\n")).toThrow(/malformed mountinfo/);
    expect(() => parseMountinfo("22 1 253:0 / /sysroot rw,relatime shared:1 opt:2 - ext4\n")).toThrow(
      /malformed mountinfo/,
    );
    expect(parseMountinfo("22 1 253:0 / /sysroot rw shared:1 a b - ext4 /dev/mapper/root rw\n")[0]!.source).toBe(
      "/dev/mapper/root",
    );
  });

  it("VCEK: a certificate whose public key does not decode is refused as evidence", () => {
    const der = fs.readFileSync(
      path.join(DIR, "vek-certificate", fs.readdirSync(path.join(DIR, "vek-certificate"))[0]!),
    );
    const err = thrownBy(() => vekPublicKey(der), CvmError);
    expect(err.kind).toBe("evidence");
    expect(err.message).toMatch(/VCEK\/VLEK certificate does not parse/);
  });

  it("LUKS2: digests nested deeper than JCS encodes fail the digest pin as a volume refusal, not a JcsError", () => {
    const dir = path.join(DIR, "luks2-json");
    const header = parseLuks2Header(new Uint8Array(fs.readFileSync(path.join(dir, fs.readdirSync(dir)[0]!))));
    const pin = { luks2DigestSha256: "0".repeat(64) };
    const err = thrownBy(() => checkPins(pin, header, "/dev/vdb"), CvmError);
    expect(err.kind).toBe("volume");
    expect(err.message).toMatch(/LUKS2 header: digests cannot be fingerprinted/);
  });
});
