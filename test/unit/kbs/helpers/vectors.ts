// Loads the generated trustee vectors (test/fixtures/kbs) and turns their keys into TeeKeyPairs.
import { readFileSync } from "node:fs";
import type { EcTeePubKey, RsaTeePubKey, TeeKeyPair } from "../../../../agent/kbs/tee-key.ts";

const dir = new URL("../../../fixtures/kbs/", import.meta.url);
export const jweVectors = JSON.parse(readFileSync(new URL("jwe-vectors.json", dir), "utf8"));
export const runtimeVectors = JSON.parse(readFileSync(new URL("runtime-data-vectors.json", dir), "utf8"));

export async function ecVectorKey(name: "ecdh-es-a256kw-p-256" | "ecdh-es-a256kw-p-521"): Promise<TeeKeyPair> {
  const v = jweVectors[name];
  const jwk = v.tee_private_jwk;
  const privateKey = await crypto.subtle.importKey(
    "jwk",
    { kty: "EC", crv: jwk.crv, x: jwk.x, y: jwk.y, d: jwk.d },
    { name: "ECDH", namedCurve: jwk.crv },
    false,
    ["deriveBits"],
  );
  return { type: jwk.crv === "P-256" ? "ec-p256" : "ec-p521", publicJwk: v.tee_pubkey as EcTeePubKey, privateKey };
}

export async function rsaVectorKey(name: "rsa-oaep-256" | "rsa1_5" = "rsa-oaep-256"): Promise<TeeKeyPair> {
  const v = jweVectors[name];
  const der = Buffer.from(String(v.tee_private_key_pkcs8_pem).replace(/-----[^-]+-----|\s/g, ""), "base64");
  const privateKey = await crypto.subtle.importKey("pkcs8", der, { name: "RSA-OAEP", hash: "SHA-256" }, false, [
    "unwrapKey",
  ]);
  return { type: "rsa-oaep-256", publicJwk: { ...v.tee_pubkey, alg: "RSA-OAEP-256" } as RsaTeePubKey, privateKey };
}
