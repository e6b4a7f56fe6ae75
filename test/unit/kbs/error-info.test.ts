import { describe, expect, it } from "vitest";
import { decideOnKbsError, MAX_ERROR_BODY_BYTES, parseErrorInformation } from "../../../agent/kbs/error-info.ts";

const body = (variant: string, detail: string) =>
  Buffer.from(JSON.stringify({ type: `https://github.com/confidential-containers/kbs/errors/${variant}`, detail }));
const decide = (phase: "auth" | "attest" | "resource", status: number, variant: string, detail: string) =>
  decideOnKbsError(
    phase,
    status,
    parseErrorInformation(body(variant, detail)),
    "https://kbs:8080",
    "default/luks/root",
  );

describe("trustee ErrorInformation", () => {
  it("parses the variant and detail whatever the content type", () => {
    expect(parseErrorInformation(body("PolicyDeny", "Access denied by policy"))).toEqual({
      variant: "PolicyDeny",
      detail: "Access denied by policy",
    });
  });

  it("rejects bodies that are not ErrorInformation", () => {
    for (const b of [
      "",
      "not json",
      "[]",
      '{"type":"x","detail":"y"}',
      '{"type":"https://github.com/confidential-containers/kbs/errors/PolicyDeny"}',
      '{"type":"https://evil/errors/PolicyDeny","detail":"d"}',
      "\xff\xfe",
    ])
      expect(parseErrorInformation(Buffer.from(b, "latin1")), b).toBeUndefined();
    const huge = Buffer.alloc(MAX_ERROR_BODY_BYTES + 1, 0x20);
    expect(parseErrorInformation(huge)).toBeUndefined();
  });

  it("makes hostile details safe to log: one line, bounded", () => {
    const info = parseErrorInformation(body("AttestationError", `a\nb\r\u001b[31mc${"x".repeat(5000)}`))!;
    expect(info.detail).not.toMatch(/[\r\n\u001b]/);
    expect(info.detail.length).toBeLessThanOrEqual(1025);
  });
});

describe("decisions", () => {
  it("expired/lost session or token -> new handshake", () => {
    for (const [phase, v, d] of [
      ["attest", "AttestationError", "Attestation error: session not found"],
      ["attest", "AttestationError", "session expired."],
      ["attest", "AttestationError", "cookie not found"],
      ["resource", "TokenNotFound", "Attestation Token not found"],
      ["resource", "TokenVerifierError", "Token Verifier error"],
    ] as const) {
      const dec = decide(phase, 401, v, d);
      expect(dec.rehandshake, `${v} ${d}`).toBe(true);
      expect(dec.error.kind).toBe("kbs-refused");
    }
  });

  it("PolicyDeny (401 now, 403 in older trustee) -> kbs-refused with the detail, no retry", () => {
    expect(decide("resource", 403, "PolicyDeny", "Access denied by policy").error.kind).toBe("kbs-refused");
    const dec = decide("resource", 401, "PolicyDeny", "Access denied by policy");
    expect(dec.rehandshake).toBe(false);
    expect(dec.error.kind).toBe("kbs-refused");
    expect(dec.error.message).toMatch(/policy denied default\/luks\/root: PolicyDeny: Access denied by policy/);
    expect(dec.error.message).toContain("https://kbs:8080");
  });

  it("missing resource (trustee: 401 PluginInternalError, detail without the cause) -> resource-missing after handshakes", () => {
    for (const detail of ["Plugin internal error", "Plugin internal error: resource not found: default/luks/root"]) {
      const dec = decide("resource", 401, "PluginInternalError", detail);
      expect(dec.rehandshake).toBe(true);
      expect(dec.error.kind).toBe("resource-missing");
      expect(dec.error.message).toMatch(
        /has no resource default\/luks\/root: PluginInternalError: Plugin internal error/,
      );
    }
    const other = decide("attest", 401, "PluginInternalError", "Plugin internal error");
    expect([other.rehandshake, other.error.kind]).toEqual([false, "kbs-protocol"]);
  });

  it("attestation failure -> kbs-refused after new handshakes (trustee's detail cannot tell it from a lost session); version mismatch -> kbs-protocol", () => {
    const dec = decide("attest", 401, "AttestationError", "Attestation error: RCAR handshake Attest failed");
    expect([dec.rehandshake, dec.error.kind]).toEqual([true, "kbs-refused"]);
    expect(dec.error.message).toMatch(/refused attestation or lost our session/);
    const auth = decide(
      "auth",
      401,
      "AttestationError",
      "Attestation error: RCAR handshake Auth failed: deserialize Request",
    );
    expect([auth.rehandshake, auth.error.kind]).toEqual([false, "kbs-refused"]);
    const v = decide(
      "auth",
      401,
      "AttestationError",
      "Attestation error: RCAR handshake Auth failed: KBS Client Protocol Version Mismatch: expect =0.4.0 while the request is 0.3.0",
    );
    expect([v.rehandshake, v.error.kind]).toEqual([false, "kbs-protocol"]);
  });

  it("404 InvalidRequestPath / PluginNotFound -> kbs-protocol naming the URL prefix", () => {
    for (const variant of ["InvalidRequestPath", "PluginNotFound"]) {
      const dec = decide("auth", 404, variant, "x");
      expect([dec.rehandshake, dec.error.kind]).toEqual([false, "kbs-protocol"]);
      expect(dec.error.hint).toMatch(/prefix/);
    }
  });

  it("JweError -> kbs-protocol suggesting another key type; non-ErrorInformation bodies -> kbs-protocol", () => {
    expect(decide("resource", 401, "JweError", "algorithm is not supported").error.hint).toMatch(/ec-p256/);
    const plain = decideOnKbsError("auth", 403, undefined, "https://kbs", undefined);
    expect([plain.rehandshake, plain.error.kind]).toEqual([false, "kbs-protocol"]);
    expect(plain.error.message).toMatch(/HTTP 403.*not a trustee ErrorInformation/);
  });
});
