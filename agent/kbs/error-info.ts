// trustee's ErrorInformation body ({"type":".../errors/<Variant>","detail":"..."}, docs/spec/kbs-protocol.md
// §1.5) and what the client does about it. trustee answers 401 for nearly everything (missing
// resource, policy deny, expired session), so the decision comes from the variant and detail,
// not from the status code.
import { CvmError } from "../../platform/util/errors.ts";

/** ErrorInformation bodies are a line of text; anything larger is not one. */
export const MAX_ERROR_BODY_BYTES = 64 * 1024;
const TYPE_PREFIX = /^https:\/\/github\.com\/confidential-containers\/kbs\/errors\/([A-Za-z0-9]{1,64})$/;
const MAX_DETAIL_CHARS = 1024;

export interface ErrorInformation {
  /** The enum variant from `type`, e.g. "PolicyDeny". */
  variant: string;
  detail: string;
}

/** Parse an ErrorInformation body whatever the content-type says. Undefined when it is not one. */
export function parseErrorInformation(body: Uint8Array): ErrorInformation | undefined {
  if (body.length === 0 || body.length > MAX_ERROR_BODY_BYTES) return undefined;
  let json: unknown;
  try {
    json = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(body));
  } catch {
    return undefined;
  }
  if (json === null || typeof json !== "object" || Array.isArray(json)) return undefined;
  const { type, detail } = json as Record<string, unknown>;
  if (typeof type !== "string" || typeof detail !== "string") return undefined;
  const m = TYPE_PREFIX.exec(type);
  if (!m) return undefined;
  return { variant: m[1]!, detail: sanitize(detail) };
}

/** Details come from the network and end up in logs: one line, printable, bounded. */
function sanitize(s: string): string {
  const clean = s.replace(/[\u0000-\u001f\u007f-\u009f]+/g, " ");
  return clean.length > MAX_DETAIL_CHARS ? `${clean.slice(0, MAX_DETAIL_CHARS)}…` : clean;
}

export type KbsPhase = "auth" | "attest" | "resource";

export interface ErrorDecision {
  /** A fresh RCAR handshake may succeed (expired session/token, or trustee's 401 for a missing resource). */
  rehandshake: boolean;
  /** What to raise when no (more) handshakes are allowed. */
  error: CvmError;
}

const SESSION_PROBLEM = /session|cookie/i;

/** Decide what a non-2xx KBS answer means for the client. */
export function decideOnKbsError(
  phase: KbsPhase,
  status: number,
  info: ErrorInformation | undefined,
  endpoint: string,
  resourcePath?: string,
): ErrorDecision {
  const at = `${endpoint} (${phase}, HTTP ${status})`;
  const said = info ? `: ${info.variant}: ${info.detail}` : "";
  const refuse = (msg: string, hint: string) => ({
    rehandshake: false,
    error: new CvmError("kbs-refused", msg, { hint }),
  });
  const protocol = (msg: string, hint: string) => ({
    rehandshake: false,
    error: new CvmError("kbs-protocol", msg, { hint }),
  });

  if (!info) {
    // trustee's router answers an unknown path with a bare 404: most often a wrong path prefix.
    if (status === 404)
      return protocol(
        `KBS ${at} has no such path (HTTP 404 without an ErrorInformation body)`,
        "check the endpoint URL and its path prefix: the client appends /kbs/v0/...",
      );
    return protocol(
      `KBS ${at} answered with a body that is not a trustee ErrorInformation`,
      "check that the endpoint is a trustee KBS (protocol 0.4.0) and not a proxy or another service",
    );
  }
  switch (info.variant) {
    case "InvalidRequestPath":
    case "PluginNotFound":
      return protocol(
        `KBS ${at} does not know this path${said}`,
        "check the endpoint URL and its path prefix: the client appends /kbs/v0/...",
      );
    case "TokenNotFound":
    case "TokenVerifierError":
      return {
        rehandshake: true,
        error: new CvmError("kbs-refused", `KBS ${at} did not accept the attestation token${said}`, {
          hint: "the token expired or the KBS cannot verify its issuer (attestation_token trust settings)",
        }),
      };
    case "PolicyDeny":
      return refuse(
        `KBS ${at} resource policy denied ${resourcePath ?? "the resource"}${said}`,
        "the KBS resource policy does not release this resource to this TEE/evidence",
      );
    case "PluginInternalError":
      // trustee's detail is only "Plugin internal error": the cause (e.g. "resource not found")
      // stays in the server log, so on the resource path this is how a missing resource looks.
      if (phase === "resource")
        return {
          rehandshake: true,
          error: new CvmError(
            "resource-missing",
            `KBS ${at} has no resource${resourcePath ? ` ${resourcePath}` : ""}${said}`,
            {
              hint: "upload the resource to the KBS or fix the resource path (REPO/TYPE/TAG); trustee reports a missing resource as 401 PluginInternalError, so if it exists check the KBS log for a storage failure",
            },
          ),
        };
      return protocol(`KBS ${at} plugin failed${said}`, "see the KBS server log");
    case "AttestationError":
      if (SESSION_PROBLEM.test(info.detail))
        return {
          rehandshake: true,
          error: new CvmError("kbs-refused", `KBS ${at} lost our session${said}`, {
            hint: "the session expired (trustee default 5 min) or the KBS replicas do not share sessions",
          }),
        };
      if (/version mismatch/i.test(info.detail))
        return protocol(
          `KBS ${at} speaks another protocol version${said}`,
          "this client speaks KBS protocol 0.4.0 (trustee v0.14 and later)",
        );
      return refuse(
        `KBS ${at} refused attestation${said}`,
        "the evidence did not verify or the attestation policy rejected it; the KBS/AS log has the cause",
      );
    case "JweError":
      return protocol(
        `KBS ${at} could not encrypt the resource to our key${said}`,
        "the KBS does not support this tee_key type; try ec-p256",
      );
    default:
      return refuse(`KBS ${at} refused${said}`, "see the KBS server log");
  }
}
