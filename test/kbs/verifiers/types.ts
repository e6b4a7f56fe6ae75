// The one interface a TEE verifier of the test KBS implements (see ../README.md).
import type { CheckedInitData } from "../init-data.ts";

export interface VerifyContext {
  /** The primary TEE from the /auth Request (never taken from the /attest body). */
  tee: string;
  /** init-data as sent (already checked: format "toml", known algorithm, digest computed), or null. */
  initData: CheckedInitData | null;
  /** The challenge nonce of this session. */
  nonce: string;
}

/** Claims a verifier returns; they become `submods.cpu0["ear.veraison.annotated-evidence"][tee]`. */
export type TeeClaims = Record<string, unknown>;

export interface TeeVerifier {
  /** trustee `Tee` string this verifier handles. */
  readonly tee: string;
  /**
   * Verify `evidence` (the untrusted `primary_evidence` JSON) against `expectedReportData`, the 48-byte
   * SHA-384 runtime digest exactly as trustee passes it; apply the TEE's own padding/truncation.
   * Throw (any Error, with a message saying what was wrong) to reject.
   */
  verify(evidence: unknown, expectedReportData: Uint8Array, ctx: VerifyContext): TeeClaims | Promise<TeeClaims>;
}
