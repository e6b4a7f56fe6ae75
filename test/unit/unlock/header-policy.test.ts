// The LUKS2 header allow-list against the attacker's rewrites (in memory: the checksum is trivially
// recomputable by the host, so only these rules protect; test/integration/unlock-hostile.test.ts
// replays the same rewrites on real images against the compiled binary).
import * as fs from "node:fs";
import * as path from "node:path";
import { describe, expect, it } from "vitest";
import { verifyHeaderPolicy } from "../../../agent/unlock/header-policy.ts";
import { luksAllowSchema } from "../../../agent/config/unlock-schema.ts";
import { parseLuks2Header, type Luks2Header } from "../../../platform/luks/luks2-header.ts";
import { CvmError } from "../../../platform/util/errors.ts";

const FIX = path.join(import.meta.dirname, "../../fixtures/unlock");
const header = parseLuks2Header(new Uint8Array(fs.readFileSync(path.join(FIX, "luks2-header.bin")).subarray(0, 16384)));
const allow = luksAllowSchema.parse({}, "unlock.luks_allow");

function edited(edit: (json: any) => void): Luks2Header {
  const json = structuredClone(header.json) as any;
  edit(json);
  return { ...header, json };
}

function refusal(h: Luks2Header, a = allow): CvmError {
  try {
    verifyHeaderPolicy(h, a, "/dev/x");
  } catch (e) {
    expect(e).toBeInstanceOf(CvmError);
    return e as CvmError;
  }
  throw new Error("the header was accepted");
}

describe("LUKS2 header allow-list", () => {
  it("accepts what cryptsetup luksFormat writes by default", () => {
    const v = verifyHeaderPolicy(header, allow, "/dev/x");
    expect(v.segment.encryption).toBe("aes-xts-plain64");
    expect(v.keyBytes).toBe(64);
    expect(v.segment.offset).toBe(16777216n);
  });

  const attacks: [string, (j: any) => void, RegExp][] = [
    [
      "segment cipher_null",
      (j) => (j.segments["0"].encryption = "cipher_null-ecb"),
      /segments\.0\.encryption .*null or ECB/,
    ],
    ["segment ECB", (j) => (j.segments["0"].encryption = "aes-ecb"), /segments\.0\.encryption .*null or ECB/],
    [
      "segment CBC (not allowed)",
      (j) => (j.segments["0"].encryption = "aes-cbc-plain"),
      /not in unlock.luks_allow.ciphers/,
    ],
    ["segment type linear", (j) => (j.segments["0"].type = "linear"), /segments\.0\.type/],
    [
      "keyslot area cipher_null",
      (j) => (j.keyslots["0"].area.encryption = "cipher_null-ecb"),
      /keyslots\.0\.area\.encryption/,
    ],
    ["keyslot area ECB", (j) => (j.keyslots["0"].area.encryption = "aes-ecb"), /keyslots\.0\.area\.encryption/],
    ["keyslot area key 128", (j) => (j.keyslots["0"].area.key_size = 16), /keyslots\.0\.area\.key_size is 128 bits/],
    ["volume key 128 bits", (j) => (j.keyslots["0"].key_size = 16), /volume key size is 128 bits/],
    [
      "data offset 0 (inside the header)",
      (j) => (j.segments["0"].offset = "0"),
      /segments\.0\.offset.*inside the header/,
    ],
    ["data offset inside keyslots", (j) => (j.segments["0"].offset = "32768"), /inside the header and keyslots area/],
    ["data offset unaligned", (j) => (j.segments["0"].offset = "16777728"), /not a multiple of the sector size/],
    ["sector size 8192", (j) => (j.segments["0"].sector_size = 8192), /sector_size/],
    ["sector size 1000", (j) => (j.segments["0"].sector_size = 1000), /sector_size/],
    ["size 0", (j) => (j.segments["0"].size = "0"), /segments\.0\.size/],
    ["size above 2^63", (j) => (j.segments["0"].size = "99999999999999999999"), /segments\.0\.size/],
    ["integrity", (j) => (j.segments["0"].integrity = { type: "hmac(sha256)" }), /integrity/],
    ["iv_tweak", (j) => (j.segments["0"].iv_tweak = "7"), /iv_tweak/],
    ["second segment", (j) => (j.segments["1"] = { ...j.segments["0"], offset: "33554432" }), /2 data segments/],
    ["digest hash md5", (j) => (j.digests["0"].hash = "md5"), /digests\.0\.hash/],
    ["digest type", (j) => (j.digests["0"].type = "argon2"), /digests\.0\.type/],
    ["digest iterations 1", (j) => (j.digests["0"].iterations = 1), /digests\.0\.iterations/],
    ["keyslot kdf hash", (j) => (j.keyslots["0"].kdf.hash = "md5"), /keyslots\.0\.kdf\.hash/],
    ["keyslot af stripes", (j) => (j.keyslots["0"].af.stripes = 1), /keyslots\.0\.af/],
    ["keyslot area outside", (j) => (j.keyslots["0"].area.offset = "16777216"), /keyslots\.0\.area/],
    [
      "overlapping keyslot areas",
      (j) =>
        (j.keyslots["1"] = { ...structuredClone(j.keyslots["0"]), area: { ...j.keyslots["0"].area, offset: "36864" } }),
      /keyslots\.1\.area.*overlaps/,
    ],
    ["keyslot type reencrypt", (j) => (j.keyslots["0"].type = "reencrypt"), /keyslots\.0\.type/],
    [
      "argon2 memory bomb",
      (j) =>
        Object.assign(j.keyslots["0"].kdf, {
          type: "argon2id",
          time: 4,
          memory: 2 ** 31,
          cpus: 4,
          hash: undefined,
          iterations: undefined,
        }),
      /kdf\.memory/,
    ],
    ["requirements", (j) => (j.config.requirements = { mandatory: ["online-reencrypt-v2"] }), /requirements/],
    ["allow-discards", (j) => (j.config.flags = ["allow-discards"]), /config\.flags/],
    ["unknown segment member", (j) => (j.segments["0"].evil = 1), /segments\.0\.evil.*unknown member/],
    ["keyslot without digest", (j) => (j.digests["0"].keyslots = []), /no keyslot holds the volume key/],
  ];
  for (const [name, edit, re] of attacks)
    it(`refuses: ${name}`, () => {
      const e = refusal(edited(edit));
      expect(e.kind).toBe("volume");
      expect(e.message).toMatch(re);
    });

  it("a digests member nested deeper than the JCS limit is a volume error (no JcsError)", () => {
    let deep: unknown = "x";
    for (let i = 0; i < 100; i++) deep = [deep];
    const e = refusal(edited((j) => (j.digests["0"].salt = deep)));
    expect(e.kind).toBe("volume");
    expect(e.message).toMatch(/digests\.0\.salt/);
  });

  it("the configured allow-list widens only within the rules; null/ECB stay refused even if configured", () => {
    const cbc = edited((j) => {
      j.segments["0"].encryption = "aes-cbc-essiv:sha256";
      j.keyslots["0"].area.encryption = "aes-cbc-essiv:sha256";
      j.keyslots["0"].key_size = 32;
      j.keyslots["0"].area.key_size = 32;
    });
    const wider = luksAllowSchema.parse({ ciphers: ["aes-cbc-essiv:sha256"] }, "unlock.luks_allow");
    expect(() => verifyHeaderPolicy(cbc, wider, "/dev/x")).not.toThrow();
    for (const bad of ["cipher_null-ecb", "aes-ecb", "aes-ECB-plain"])
      expect(() => luksAllowSchema.parse({ ciphers: [bad] }, "unlock.luks_allow")).toThrow(/without null\/ecb/);
    const nul = edited((j) => (j.segments["0"].encryption = "cipher_null-ecb"));
    expect(refusal(nul, { ...allow, ciphers: ["cipher_null-ecb"] }).message).toMatch(/never accepted/);
  });
});
