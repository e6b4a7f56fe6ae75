// TPMT_PUBLIC → DER SubjectPublicKeyInfo (what trustee's `ak_public` carries) via node:crypto JWK import.
import { createPublicKey } from "node:crypto";
import { b64url } from "../../util/bytes.ts";
import { CvmError } from "../../util/errors.ts";
import { toPem } from "../../util/pem.ts";
import { TPM_ALG, algName } from "../constants.ts";
import type { TpmPublic } from "../structures.ts";

const CURVES: Record<number, { crv: string; size: number }> = {
  0x0003: { crv: "P-256", size: 32 },
  0x0004: { crv: "P-384", size: 48 },
  0x0005: { crv: "P-521", size: 66 },
};

function exponentBytes(e: number): Uint8Array {
  const v = e === 0 ? 65537 : e;
  const out = [];
  for (let x = v; x > 0; x = Math.floor(x / 256)) out.unshift(x & 0xff);
  return Uint8Array.from(out);
}

function leftPad(b: Uint8Array, n: number): Uint8Array {
  if (b.length >= n) return b;
  const out = new Uint8Array(n);
  out.set(b, n - b.length);
  return out;
}

/** DER SPKI of an RSA or ECC TPM key. */
export function publicToSpkiDer(p: TpmPublic): Uint8Array {
  try {
    if (p.type === TPM_ALG.RSA) {
      if (p.unique.length === 0) throw new CvmError("evidence", "RSA key has an empty modulus");
      const jwk = { kty: "RSA", n: b64url(p.unique), e: b64url(exponentBytes(p.rsa.exponent)) };
      return new Uint8Array(createPublicKey({ key: jwk, format: "jwk" }).export({ type: "spki", format: "der" }));
    }
    if (p.type === TPM_ALG.ECC) {
      const c = CURVES[p.ecc.curve];
      if (!c) throw new CvmError("evidence", `unsupported ECC curve 0x${p.ecc.curve.toString(16)}`);
      const jwk = { kty: "EC", crv: c.crv, x: b64url(leftPad(p.x, c.size)), y: b64url(leftPad(p.y, c.size)) };
      return new Uint8Array(createPublicKey({ key: jwk, format: "jwk" }).export({ type: "spki", format: "der" }));
    }
  } catch (e) {
    if (e instanceof CvmError) throw e;
    throw new CvmError("evidence", `TPM public key is not a valid ${algName(p.type)} key: ${(e as Error).message}`);
  }
  throw new CvmError("evidence", `cannot express a ${algName(p.type)} TPM object as a public key`);
}

/** PEM form (tpm2_checkquote, people). */
export function spkiPem(der: Uint8Array): string {
  return toPem("PUBLIC KEY", der);
}
