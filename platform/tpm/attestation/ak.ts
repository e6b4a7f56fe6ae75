// The attestation key for generic `tpm` evidence (trustee; docs/spec/kbs-protocol.md §4.4): RSA-2048,
// RSASSA-SHA256. Preferred: a persistent key at PlatformEnv.tpm.akHandle (trustee's attester uses
// 0x81010002). Otherwise a primary key derived from the fixed template below under the
// endorsement hierarchy: deterministic (same seed + same template ⇒ same key every boot), so the
// KBS can pin it in trusted_aks, and nothing is written to the TPM. It is flushed afterwards.
import { TPMA_OBJECT, TPM_ALG, TPM_RH, hex32 } from "../constants.ts";
import type { Tpm } from "../client.ts";
import { readPublicIfPresent, withPrimary } from "../operations.ts";
import { encodePublic, type TpmPublic } from "../structures.ts";

/** fixedTPM|fixedParent|sensitiveDataOrigin|userWithAuth|restricted|sign = 0x00050072. */
export const AK_ATTRIBUTES =
  TPMA_OBJECT.fixedTPM |
  TPMA_OBJECT.fixedParent |
  TPMA_OBJECT.sensitiveDataOrigin |
  TPMA_OBJECT.userWithAuth |
  TPMA_OBJECT.restricted |
  TPMA_OBJECT.sign;

/**
 * RSA-2048 restricted signing key, RSASSA-SHA256, nameAlg SHA-256, empty authPolicy, exponent
 * 65537, empty unique — 24 bytes `0001 000b 00050072 0000 0010 0014 000b 0800 00000000 0000`
 * (the same as go-tpm-tools' AKTemplateRSA; docs/spec/tpm.md §5). Changing it changes the AK.
 */
export const AK_RSA_TEMPLATE: Uint8Array = encodePublic({
  type: TPM_ALG.RSA,
  nameAlg: TPM_ALG.SHA256,
  attributes: AK_ATTRIBUTES,
  authPolicy: new Uint8Array(0),
  rsa: {
    symmetric: { alg: TPM_ALG.NULL },
    scheme: { scheme: TPM_ALG.RSASSA, hashAlg: TPM_ALG.SHA256 },
    keyBits: 2048,
    exponent: 0,
  },
  unique: new Uint8Array(0),
});

export interface AttestationKey {
  handle: number;
  publicArea: TpmPublic;
  origin: "persistent" | "derived";
  /** CreatePrimary time (derived) or ReadPublic time (persistent), ms. */
  loadMs: number;
}

/** Why a key at the persistent handle cannot sign trustee `tpm` quotes, or undefined if it can. */
export function unsuitableAk(p: TpmPublic): string | undefined {
  if (p.type !== TPM_ALG.RSA) return "it is not an RSA key (trustee requires RSA)";
  if (!(p.attributes & TPMA_OBJECT.sign)) return "it is not a signing key";
  if (p.attributes & TPMA_OBJECT.decrypt) return "it is a decryption key";
  const s = p.rsa.scheme;
  if (s.scheme !== TPM_ALG.NULL && (s.scheme !== TPM_ALG.RSASSA || s.hashAlg !== TPM_ALG.SHA256))
    return "its scheme is not RSASSA-SHA256";
  return undefined;
}

/** Load the AK, run `fn`, and flush the AK if we created it (also on errors). */
export async function withAttestationKey<T>(
  tpm: Tpm,
  persistentHandle: number,
  fn: (ak: AttestationKey) => Promise<T>,
): Promise<T> {
  let t0 = performance.now();
  const existing = await readPublicIfPresent(tpm, persistentHandle);
  if (existing) {
    const why = unsuitableAk(existing.publicArea);
    if (!why)
      return fn({
        handle: persistentHandle,
        publicArea: existing.publicArea,
        origin: "persistent",
        loadMs: performance.now() - t0,
      });
    tpm.log.warning(
      `persistent key ${hex32(persistentHandle)} cannot be the AK: ${why}; deriving the AK from the endorsement hierarchy instead`,
    );
  } else {
    tpm.log.debug(`no persistent AK at ${hex32(persistentHandle)}; deriving it from the endorsement hierarchy`);
  }
  t0 = performance.now();
  return withPrimary(tpm, TPM_RH.ENDORSEMENT, AK_RSA_TEMPLATE, (key) =>
    fn({ handle: key.handle, publicArea: key.publicArea, origin: "derived", loadMs: performance.now() - t0 }),
  );
}
