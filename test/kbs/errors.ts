// trustee's error responses (docs/spec/kbs-protocol.md §1.5): body {"type": PREFIX/<Variant>, "detail": <Display>},
// 404 only for InvalidRequestPath / PluginNotFound, 401 for everything else. The wire detail is
// trustee's Display text; `reason` says what really went wrong and is only kept server-side
// (stats.errors), exactly as trustee only logs it.

export const ERROR_TYPE_PREFIX = "https://github.com/confidential-containers/kbs/errors";

export type KbsErrorVariant =
  | "AdminAuthInitialization"
  | "AdminAuthAccess"
  | "AttestationError"
  | "InvalidRequestPath"
  | "JweError"
  | "PluginNotFound"
  | "PluginInternalError"
  | "PolicyDeny"
  | "SerdeError"
  | "TokenNotFound"
  | "TokenVerifierError";

export class KbsError extends Error {
  readonly variant: KbsErrorVariant;
  readonly detail: string;
  /** What really went wrong (server-side only). */
  readonly reason: string | undefined;
  constructor(variant: KbsErrorVariant, detail: string, reason?: string) {
    super(reason === undefined ? detail : `${detail} (${reason})`);
    this.name = "KbsError";
    this.variant = variant;
    this.detail = detail;
    this.reason = reason;
  }

  get status(): number {
    return this.variant === "InvalidRequestPath" || this.variant === "PluginNotFound" ? 404 : 401;
  }

  body(): string {
    return JSON.stringify({ type: `${ERROR_TYPE_PREFIX}/${this.variant}`, detail: this.detail });
  }
}

/** /auth failures: trustee shows the outermost anyhow message after the prefix. */
export function authFailed(message: string, cause?: string): KbsError {
  return new KbsError(
    "AttestationError",
    `Attestation error: RCAR handshake Auth failed: ${message}`,
    cause ?? message,
  );
}

/** /attest failures: trustee's Display drops the source, so the detail never says why. */
export function attestFailed(cause: string): KbsError {
  return new KbsError("AttestationError", "Attestation error: RCAR handshake Attest failed", cause);
}

export const tokenNotFound = (cause: string) => new KbsError("TokenNotFound", "Attestation Token not found", cause);
export const tokenVerifierError = (cause: string) => new KbsError("TokenVerifierError", "Token Verifier error", cause);
export const policyDeny = (cause: string) => new KbsError("PolicyDeny", "Access denied by policy", cause);
export const pluginInternal = (cause: string) => new KbsError("PluginInternalError", "Plugin internal error", cause);
export const pluginNotFound = (name: string) => new KbsError("PluginNotFound", `Plugin ${name} not found`);
export const jweError = (cause: string) => new KbsError("JweError", "JWE failed", cause);
