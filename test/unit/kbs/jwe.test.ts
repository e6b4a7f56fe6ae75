import { describe, expect, it } from "vitest";
import { concatKdf, decryptResourceJwe } from "../../../agent/kbs/jwe.ts";
import { generateTeeKey, type TeeKeyPair } from "../../../agent/kbs/tee-key.ts";
import { CvmError } from "../../../platform/util/errors.ts";
import { prng } from "../../helpers/prng.ts";
// The KBS side is the test KBS's encryptor (test/kbs/jwe.ts): written apart from agent/kbs/jwe.ts,
// and checked here to reproduce trustee's vectors byte for byte.
import { encryptJwe, serializeJwe, type FlattenedJwe } from "../../kbs/jwe.ts";
import { ecVectorKey, jweVectors, rsaVectorKey } from "./helpers/vectors.ts";

const EC_VECTORS = ["ecdh-es-a256kw-p-256", "ecdh-es-a256kw-p-521"] as const;
const text = (b: Uint8Array) => Buffer.from(b).toString("utf8");

async function decryptError(body: unknown, key: TeeKeyPair): Promise<CvmError> {
  const e = await decryptResourceJwe(body, key).then(
    () => undefined,
    (err: unknown) => err,
  );
  expect(e).toBeInstanceOf(CvmError);
  expect((e as CvmError).kind).toBe("decrypt");
  return e as CvmError;
}

const flip = (b64u: string, byte = 0) => {
  const b = Buffer.from(b64u, "base64url");
  b[byte]! ^= 0x01;
  return b.toString("base64url");
};
const reheader = (jwe: FlattenedJwe, edit: (h: Record<string, unknown>) => Record<string, unknown>) => ({
  ...jwe,
  protected: Buffer.from(JSON.stringify(edit(JSON.parse(Buffer.from(jwe.protected, "base64url").toString())))).toString(
    "base64url",
  ),
});

describe("resource JWE: generated trustee vectors", () => {
  for (const name of EC_VECTORS) {
    it(`${name}: decrypts the KBS response to the plaintext`, async () => {
      const v = jweVectors[name];
      const secret = await decryptResourceJwe(JSON.parse(v.response_json), await ecVectorKey(name));
      expect(Buffer.isBuffer(secret)).toBe(true);
      expect(text(secret)).toBe(v.plaintext_utf8);
      secret.fill(0);
      expect(secret.every((x) => x === 0)).toBe(true);
    });

    it(`${name}: Concat KDF of Z gives the vector KEK`, () => {
      const v = jweVectors[name];
      expect(Buffer.from(concatKdf(Buffer.from(v.intermediate.z_hex, "hex"), "ECDH-ES+A256KW")).toString("hex")).toBe(
        v.intermediate.kek_hex,
      );
    });

    it(`${name}: the test-side encryptor reproduces the KBS response byte for byte`, async () => {
      const v = jweVectors[name];
      const out = await encryptJwe(v.tee_pubkey, Buffer.from(v.plaintext_utf8), {
        ephemeralSecret: Buffer.from(v.server_ephemeral_private_d_hex, "hex"),
        cek: Buffer.from(v.cek_hex, "hex"),
        iv: Buffer.from(v.iv_hex, "hex"),
      });
      expect(serializeJwe(out)).toBe(v.response_json);
    });
  }

  it("rsa-oaep-256: decrypts the KBS response", async () => {
    const v = jweVectors["rsa-oaep-256"];
    expect(text(await decryptResourceJwe(JSON.parse(v.response_json), await rsaVectorKey()))).toBe(v.plaintext_utf8);
  });

  it("rsa1_5: unsupported (WebCrypto has no RSAES-PKCS1-v1_5; we never offer it), refused by alg", async () => {
    const v = jweVectors.rsa1_5;
    const e = await decryptError(JSON.parse(v.response_json), await rsaVectorKey());
    expect(e.message).toMatch(/alg is "RSA1_5" but our RSA key asked for RSA-OAEP-256/);
  });
});

describe("resource JWE: fresh keys round trip", () => {
  for (const type of ["ec-p256", "ec-p521", "rsa-oaep-256"] as const) {
    it(`${type}: random plaintexts of many sizes decrypt exactly`, async () => {
      const key = await generateTeeKey(type);
      const r = prng(0x1e5 + type.length);
      for (const n of [1, 15, 16, 17, 64, 512, 4096, r.int(1, 70_000)]) {
        const plain = r.bytes(n);
        const out = await decryptResourceJwe(await encryptJwe(key.publicJwk, plain), key);
        expect(Buffer.compare(out, Buffer.from(plain)), `${type} ${n} bytes`).toBe(0);
      }
    });
  }

  it("a JWE for another key of the same type fails to unwrap", async () => {
    const [mine, theirs] = [await generateTeeKey("ec-p256"), await generateTeeKey("ec-p256")];
    const e = await decryptError(await encryptJwe(theirs.publicJwk, Buffer.from("x")), mine);
    expect(e.message).toMatch(/AES-KW unwrap .* failed its integrity check/);
    const [rmine, rtheirs] = [await generateTeeKey("rsa-oaep-256"), await generateTeeKey("rsa-oaep-256")];
    expect((await decryptError(await encryptJwe(rtheirs.publicJwk, Buffer.from("x")), rmine)).message).toMatch(
      /RSA-OAEP-256 decryption of the content key failed/,
    );
  });
});

describe("resource JWE: tampering and malformed input fail closed with a clear error", () => {
  const v = jweVectors["ecdh-es-a256kw-p-256"];
  const good = (): FlattenedJwe => JSON.parse(v.response_json);

  it("tag, ciphertext, iv or protected-header bytes altered -> GCM authentication failure", async () => {
    const key = await ecVectorKey("ecdh-es-a256kw-p-256");
    const tag = /failed authentication \(AES-256-GCM tag mismatch\)/;
    expect((await decryptError({ ...good(), tag: flip(good().tag, 15) }, key)).message).toMatch(tag);
    expect((await decryptError({ ...good(), ciphertext: flip(good().ciphertext, 3) }, key)).message).toMatch(tag);
    expect((await decryptError({ ...good(), iv: flip(good().iv) }, key)).message).toMatch(tag);
    // Same header members, different bytes: AAD is the received string, so this must fail.
    const reordered = reheader(good(), (h) => ({ enc: h.enc, alg: h.alg, epk: h.epk }));
    expect(reordered.protected).not.toBe(good().protected);
    expect((await decryptError(reordered, key)).message).toMatch(tag);
  });

  it("encrypted_key altered -> key unwrap integrity failure", async () => {
    const key = await ecVectorKey("ecdh-es-a256kw-p-256");
    expect((await decryptError({ ...good(), encrypted_key: flip(good().encrypted_key, 20) }, key)).message).toMatch(
      /AES-KW unwrap/,
    );
  });

  it("epk on the wrong curve, off the curve or mis-sized is refused before any crypto", async () => {
    const key = await ecVectorKey("ecdh-es-a256kw-p-256");
    const p521 = JSON.parse(jweVectors["ecdh-es-a256kw-p-521"].response_json);
    expect((await decryptError(p521, key)).message).toMatch(/epk is on curve "P-521" but our key is P-256/);
    const offCurve = reheader(good(), (h) => ({
      ...h,
      epk: { ...(h.epk as object), y: Buffer.alloc(32, 7).toString("base64url") },
    }));
    expect((await decryptError(offCurve, key)).message).toMatch(/epk is not a valid P-256 public key/);
    const short = reheader(good(), (h) => ({
      ...h,
      epk: { ...(h.epk as object), x: Buffer.alloc(31, 7).toString("base64url") },
    }));
    expect((await decryptError(short, key)).message).toMatch(/epk 'x' is 31 bytes, P-256 needs 32/);
    const withD = reheader(good(), (h) => ({ ...h, epk: { ...(h.epk as object), d: "AA" } }));
    expect((await decryptError(withD, key)).message).toMatch(/private key member 'd'/);
    const noEpk = reheader(good(), ({ epk: _e, ...h }) => h);
    expect((await decryptError(noEpk, key)).message).toMatch(/no 'epk'/);
  });

  it("header parameters we did not ask for are refused", async () => {
    const key = await ecVectorKey("ecdh-es-a256kw-p-256");
    const cases: [Record<string, unknown>, RegExp][] = [
      [{ alg: "ECDH-ES" }, /alg is "ECDH-ES" but our P-256 key asked for ECDH-ES\+A256KW/],
      [{ alg: "RSA-OAEP-256" }, /alg is "RSA-OAEP-256"/],
      [{ enc: "A128GCM" }, /enc is "A128GCM", only A256GCM/],
      [{ zip: "DEF" }, /'zip' is not supported/],
      [{ crit: ["exp"] }, /'crit' is not supported/],
      [{ apu: "QQ" }, /'apu' is not supported/],
    ];
    for (const [edit, msg] of cases)
      expect(
        (
          await decryptError(
            reheader(good(), (h) => ({ ...h, ...edit })),
            key,
          )
        ).message,
      ).toMatch(msg);
    const rsa = await rsaVectorKey();
    const ecFor = JSON.parse(jweVectors["rsa-oaep-256"].response_json);
    const withEpk = reheader(ecFor, (h) => ({ ...h, epk: { kty: "EC" } }));
    expect((await decryptError(withEpk, rsa)).message).toMatch(/has an 'epk' but our key is RSA/);
  });

  it("wrong sizes and encodings are named", async () => {
    const key = await ecVectorKey("ecdh-es-a256kw-p-256");
    const cases: [Record<string, unknown>, RegExp][] = [
      [{ iv: Buffer.alloc(16).toString("base64url") }, /iv is 16 bytes, A256GCM uses 12/],
      [{ tag: Buffer.alloc(12).toString("base64url") }, /tag is 12 bytes, A256GCM uses 16/],
      [
        { encrypted_key: Buffer.alloc(48).toString("base64url") },
        /encrypted_key is 48 bytes, AES-256-KW of the CEK is 40/,
      ],
      [{ iv: "oKGio6Slpqeoqaqr==" }, /resource JWE: field 'iv' at offset 16 \(0x10\): not unpadded base64url/],
      [{ ciphertext: "a+b/" }, /field 'ciphertext' at offset 1 \(0x1\): not unpadded base64url/],
      [{ tag: 5 }, /member 'tag' is not a string/],
      [{ protected: "" }, /protected header is 0 characters/],
      [{ protected: Buffer.from("not json").toString("base64url") }, /not UTF-8 JSON/],
      [{ protected: Buffer.from("[1]").toString("base64url") }, /not a JSON object/],
      [{ aad: "x" }, /member 'aad' is not supported/],
      [{ unprotected: {} }, /member 'unprotected' is not supported/],
    ];
    for (const [edit, msg] of cases) expect((await decryptError({ ...good(), ...edit }, key)).message).toMatch(msg);
    const { encrypted_key: _k, ...missing } = good();
    expect((await decryptError(missing, key)).message).toMatch(/member 'encrypted_key' is missing/);
    for (const body of [null, [], "x", 3]) expect((await decryptError(body, key)).message).toMatch(/not a JSON object/);
  });

  it("a 16-byte CEK (A128 key in an A256GCM JWE) is refused", async () => {
    const key = await rsaVectorKey();
    // A 16-byte CEK gives AES-128-GCM under an "enc":"A256GCM" label; the check must fire before decryption.
    const jwe = await encryptJwe(key.publicJwk, Buffer.from("x"), { cek: Buffer.alloc(16, 1) });
    expect((await decryptError(jwe, key)).message).toMatch(/content key is 128 bits, A256GCM needs 256/);
  });
});
