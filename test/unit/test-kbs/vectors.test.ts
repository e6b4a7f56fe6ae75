// The generated trustee vectors replayed against the server: with the challenge nonce pinned to the
// vector's, the reference-client-shaped /auth and /attest bodies are accepted byte for byte, the
// composite (sampledevice) binding verifies, and changing one byte of it does not.
import { readFileSync } from "node:fs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { cookieOf, rawRequest } from "../../kbs/raw-client.ts";
import { startTestKbs, type TestKbs } from "../../kbs/server.ts";

const rd = JSON.parse(readFileSync(new URL("../../fixtures/kbs/runtime-data-vectors.json", import.meta.url), "utf8"));
let kbs: TestKbs;
beforeAll(async () => {
  kbs = await startTestKbs({ nonce: () => rd.inputs.challenge_nonce });
});
afterAll(() => kbs.close());

async function attestBody(body: string): Promise<{ status: number; body: string }> {
  const a = await rawRequest(`${kbs.url}/kbs/v0/auth`, { body: rd.auth_request_body_json });
  expect(a.status).toBe(200);
  expect(JSON.parse(a.body).nonce).toBe(rd.inputs.challenge_nonce);
  return rawRequest(`${kbs.url}/kbs/v0/attest`, { body, headers: { cookie: cookieOf(a) } });
}

describe("vector replay", () => {
  it("accepts the reference /attest body for sample", async () => {
    const r = await attestBody(rd.attest_request_body_sample_json);
    expect(r.status, r.body).toBe(200);
  });

  it("accepts the composite body with a sampledevice bound to {nonce, tee-pubkey}", async () => {
    const sd = rd.with_sample_device;
    const body = JSON.stringify({
      "init-data": null,
      "runtime-data": { nonce: rd.inputs.challenge_nonce, "tee-pubkey": rd.inputs.tee_pubkey },
      "tee-evidence": {
        primary_evidence: sd.sample_primary_evidence,
        additional_evidence: sd.additional_evidence_string,
      },
    });
    const r = await attestBody(body);
    expect(r.status, r.body).toBe(200);
    const claims = JSON.parse(Buffer.from(JSON.parse(r.body).token.split(".")[1], "base64url").toString());
    expect(claims.submods.cpu0["ear.veraison.annotated-evidence"].report_data).toBe(sd.primary_sha384_hex);
  });

  it("rejects the composite body when the device evidence is bound to the primary digest instead", async () => {
    const sd = rd.with_sample_device;
    const wrongDevice = JSON.stringify({ sampledevice: { svn: "2", report_data: rd.sample_evidence.report_data } });
    const body = JSON.stringify({
      "init-data": null,
      "runtime-data": { nonce: rd.inputs.challenge_nonce, "tee-pubkey": rd.inputs.tee_pubkey },
      "tee-evidence": { primary_evidence: sd.sample_primary_evidence, additional_evidence: wrongDevice },
    });
    const r = await attestBody(body);
    expect(r.status).toBe(401);
    expect(kbs.stats.errors.at(-1)!.reason).toMatch(/sampledevice/);
  });
});
