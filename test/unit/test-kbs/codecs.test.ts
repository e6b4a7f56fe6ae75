// Pure codecs of the test KBS against the generated trustee vectors (test/fixtures/kbs).
import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { fromHex, hex, utf8 } from "../../../platform/util/bytes.ts";
import { canonicalJson } from "../../kbs/jcs.ts";
import { concatKdf256, encryptJwe, serializeJwe, tamperJwe } from "../../kbs/jwe.ts";
import { parseTeePubKey } from "../../kbs/messages.ts";
import { primaryRuntimeData, runtimeDigest } from "../../kbs/runtime-data.ts";
import { p256, p521 } from "@noble/curves/nist.js";

const fixture = (f: string) => JSON.parse(readFileSync(new URL(`../../fixtures/kbs/${f}`, import.meta.url), "utf8"));
const rd = fixture("runtime-data-vectors.json");
const jwe = fixture("jwe-vectors.json");

describe("JCS and runtime digest", () => {
  it("reproduces trustee's upstream JCS check vector", () => {
    const v = { b: 1, a: "test", c: { d: "e" } };
    expect(canonicalJson(v)).toBe('{"a":"test","b":1,"c":{"d":"e"}}');
    expect(hex(runtimeDigest("sample", v))).toBe(
      "e71ce8e70d814ba6639c3612ebee0ff1f76f650f8dbb5e47157e0f3f525cd22c4597480a186427c813ca941da78870c3",
    );
  });

  it('builds the primary runtime data exactly like the generated vector (incl. additional-evidence "")', () => {
    const tpk = parseTeePubKey(rd.inputs.tee_pubkey);
    const data = primaryRuntimeData(tpk, rd.inputs.challenge_nonce, rd.inputs.additional_evidence);
    expect(canonicalJson(data)).toBe(rd.primary_runtime_data_canonical_json);
    expect(hex(runtimeDigest("sample", data))).toBe(rd.primary_sha384_hex);
    expect(hex(runtimeDigest("se", data))).toBe(rd.primary_sha512_hex_for_se);
  });

  it("drops non-typed JWK members when re-serializing the tee-pubkey (the server-side hash ignores kid)", () => {
    const withKid = parseTeePubKey({ ...rd.inputs.tee_pubkey, kid: "k1", use: "enc" });
    expect(hex(runtimeDigest("sample", primaryRuntimeData(withKid, rd.inputs.challenge_nonce, "")))).toBe(
      rd.primary_sha384_hex,
    );
  });

  it("sorts keys by UTF-16 code unit and escapes like ECMAScript", () => {
    expect(canonicalJson({ "\u00e9": 1, z: [true, null, 1e21, 0.5], a: "\u2028\n" })).toBe(
      '{"a":"\u2028\\n","z":[true,null,1e+21,0.5],"\u00e9":1}',
    );
    expect(() => canonicalJson({ x: Number.NaN })).toThrow(/non-finite/);
  });

  it("rejects tee-pubkeys trustee's serde would reject", () => {
    expect(() => parseTeePubKey({ kty: "oct", k: "x" })).toThrow(/unknown variant/);
    expect(() => parseTeePubKey({ kty: "EC", crv: "P-256", x: "a", y: "b" })).toThrow(/missing field `alg`/);
    expect(() => parseTeePubKey({ kty: "RSA", alg: "RSA-OAEP-256", n: 5, e: "AQAB" })).toThrow(/`n` must be a string/);
  });
});

describe("JWE reproduces the generated trustee vectors byte for byte", () => {
  for (const [name, curve] of [
    ["ecdh-es-a256kw-p-256", p256],
    ["ecdh-es-a256kw-p-521", p521],
  ] as const) {
    it(name, async () => {
      const v = jwe[name];
      const out = await encryptJwe(parseTeePubKey(v.tee_pubkey), utf8(v.plaintext_utf8), {
        cek: fromHex(v.cek_hex),
        iv: fromHex(v.iv_hex),
        ephemeralSecret: fromHex(v.server_ephemeral_private_d_hex),
      });
      expect(Buffer.from(out.protected, "base64url").toString()).toBe(v.intermediate.protected_header_json);
      expect(serializeJwe(out)).toBe(v.response_json);
      expect(hex(concatKdf256(fromHex(v.intermediate.z_hex), "ECDH-ES+A256KW"))).toBe(v.intermediate.kek_hex);
      expect(curve).toBeDefined();
    });
  }

  it("tamperJwe flips exactly one bit of the ciphertext", async () => {
    const v = jwe["ecdh-es-a256kw-p-256"];
    const out = await encryptJwe(parseTeePubKey(v.tee_pubkey), utf8("abc"));
    const t = tamperJwe(out, "ciphertext");
    const a = Buffer.from(out.ciphertext, "base64url");
    const b = Buffer.from(t.ciphertext, "base64url");
    expect(a.length).toBe(b.length);
    expect([...a].map((x, i) => x ^ b[i]!).reduce((s, x) => s + x, 0)).toBe(1);
    expect(t.tag).toBe(out.tag);
  });

  it("fails like trustee for unsupported key choices", async () => {
    const ec = parseTeePubKey(jwe["ecdh-es-a256kw-p-256"].tee_pubkey);
    await expect(encryptJwe({ ...ec, crv: "P-384" } as never, utf8("x"))).rejects.toThrow(
      /curve P-384 is not supported/,
    );
    await expect(encryptJwe({ ...ec, alg: "ECDH-ES" } as never, utf8("x"))).rejects.toThrow(/ECDH-ES is not supported/);
    await expect(
      encryptJwe({ ...ec, x: Buffer.alloc(33, 1).toString("base64url") } as never, utf8("x")),
    ).rejects.toThrow(/32 bytes/);
    await expect(encryptJwe({ kty: "RSA", alg: "RSA-OAEP", n: "AQAB", e: "AQAB" }, utf8("x"))).rejects.toThrow(
      /RSA-OAEP is not supported/,
    );
    await expect(encryptJwe({ kty: "AKP", alg: "ML-KEM-768+A192KW", pub: "AA" }, utf8("x"))).rejects.toThrow(
      /not supported/,
    );
  });

  it("rejects an EC point that is not on the curve", async () => {
    const ec = jwe["ecdh-es-a256kw-p-256"].tee_pubkey;
    const bad = { ...ec, y: Buffer.alloc(32, 7).toString("base64url") };
    await expect(encryptJwe(parseTeePubKey(bad), utf8("x"))).rejects.toThrow();
  });
});
