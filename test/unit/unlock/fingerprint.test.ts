import * as fs from "node:fs";
import * as path from "node:path";
import { describe, expect, it } from "vitest";
import { luks2DigestFingerprint, luks2FingerprintV2 } from "../../../agent/unlock/fingerprint.ts";
import { checkPins, parseKeyResource } from "../../../agent/unlock/key-document.ts";
import { parseLuks2Header, type Luks2Header } from "../../../platform/luks/luks2-header.ts";
import { CvmError } from "../../../platform/util/errors.ts";

const FIX = path.join(import.meta.dirname, "../../fixtures/unlock");
const header = parseLuks2Header(new Uint8Array(fs.readFileSync(path.join(FIX, "luks2-header.bin")).subarray(0, 16384)));
// Computed independently with python3 from luks2-header.json (see PROVENANCE.md).
const V2 = "37345c25cb81a4c24d670b3e85b21efc2574b21962fb30d1eab60a8215dbc9a1";

/** A copy of the fixture header with its JSON edited (checksums do not matter to the fingerprint). */
function edited(edit: (json: any) => void): Luks2Header {
  const json = structuredClone(header.json) as any;
  edit(json);
  return { ...header, json };
}

function thrown(f: () => unknown): CvmError {
  try {
    f();
  } catch (e) {
    return e as CvmError;
  }
  throw new Error("did not throw");
}

describe("luks2_fingerprint_v2", () => {
  it("matches the independently computed value", () => {
    expect(luks2FingerprintV2(header)).toBe(V2);
  });

  it("does not change when a keyslot is added or wiped", () => {
    const added = edited((j) => {
      j.keyslots["1"] = structuredClone(j.keyslots["0"]);
      j.keyslots["1"].area.offset = "290816"; // the next free area, as luksAddKey picks it
      j.digests["0"].keyslots.push("1");
    });
    expect(luks2FingerprintV2(added)).toBe(V2);
    const wiped = edited((j) => {
      j.keyslots = { "1": j.keyslots["0"] };
      j.digests["0"].keyslots = ["1"];
    });
    expect(luks2FingerprintV2(wiped)).toBe(V2);
  });

  it("changes when the data segment is rewritten, while v1 does not notice", () => {
    const rewrites: ((j: any) => void)[] = [
      (j) => (j.segments["0"].encryption = "cipher_null-ecb"),
      (j) => (j.segments["0"].encryption = "aes-ecb"),
      (j) => (j.segments["0"].offset = "20971520"),
      (j) => (j.segments["0"].size = "4096"),
      (j) => (j.segments["0"].sector_size = 512),
      (j) => (j.keyslots["0"].key_size = 32),
    ];
    for (const r of rewrites) {
      const h = edited(r);
      expect(luks2DigestFingerprint(h)).toBe(luks2DigestFingerprint(header));
      expect(luks2FingerprintV2(h)).not.toBe(V2);
    }
  });

  it("a digests member nested deeper than JCS allows is a volume error, not an internal one", () => {
    let deep: unknown = "x";
    for (let i = 0; i < 100; i++) deep = { d: deep };
    const h = edited((j) => (j.digests["0"].salt = deep));
    expect(thrown(() => luks2DigestFingerprint(h)).kind).toBe("volume");
    expect(thrown(() => luks2FingerprintV2(h)).kind).toBe("volume");
  });

  it("is accepted as a key-document pin and checked", () => {
    const k = parseKeyResource(
      Buffer.from(JSON.stringify({ cvm_unlock_key: 1, key: "AAAA", pins: { luks2_fingerprint_v2: V2.toUpperCase() } })),
    );
    expect(k.pins).toEqual({ luks2FingerprintV2: V2 });
    expect(() => checkPins(k.pins, header, "/dev/x")).not.toThrow();
    const e = thrown(() =>
      checkPins(
        k.pins,
        edited((j) => (j.segments["0"].encryption = "aes-ecb")),
        "/dev/x",
      ),
    );
    expect(e.kind).toBe("volume");
    expect(e.message).toMatch(/fingerprint v2 [0-9a-f]{64} does not match the pin/);
  });
});
