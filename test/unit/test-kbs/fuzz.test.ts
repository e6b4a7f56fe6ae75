// Property: random mutations of a valid /attest body never yield a token, and every answer is a
// well-formed trustee error (the server never crashes on hostile input).
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { prng } from "../../helpers/prng.ts";
import { cookieOf, digestFor, makeTeeKey, rawRequest, sampleEvidence, type TeeKey } from "../../kbs/raw-client.ts";
import { startTestKbs, type TestKbs } from "../../kbs/server.ts";

let kbs: TestKbs;
let key: TeeKey;
beforeAll(async () => {
  kbs = await startTestKbs();
  key = await makeTeeKey();
});
afterAll(() => kbs.close());

function mutate(value: unknown, r: ReturnType<typeof prng>): unknown {
  if (value === null || typeof value !== "object") {
    return r.pick([null, 0, "", "x", [], {}, true, typeof value === "string" ? value + "A" : value]);
  }
  const copy: Record<string, unknown> = Array.isArray(value) ? ([...value] as never) : { ...(value as object) };
  const keys = Object.keys(copy);
  if (keys.length === 0) return r.pick([null, "x"]);
  const k = r.pick(keys);
  switch (r.int(0, 3)) {
    case 0:
      delete copy[k];
      break;
    case 1:
      copy[k] = mutate(copy[k], r);
      break;
    case 2:
      copy[k] = r.pick([null, 1, "", [], {}]);
      break;
    default:
      copy[`${k}x`] = copy[k];
      delete copy[k];
  }
  return copy;
}

describe("hostile /attest bodies", () => {
  it("200 random mutations: never a token, always a trustee error body", async () => {
    const seed = Number(process.env.FUZZ_SEED ?? 0x5eed);
    const r = prng(seed);
    let rejected = 0;
    for (let i = 0; i < 200; i++) {
      const a = await rawRequest(`${kbs.url}/kbs/v0/auth`, {
        body: JSON.stringify({ version: "0.4.0", tee: "sample", "extra-params": "" }),
      });
      const nonce = JSON.parse(a.body).nonce as string;
      const valid = {
        "init-data": null,
        "runtime-data": { nonce, "tee-pubkey": key.publicJwk },
        "tee-evidence": { primary_evidence: sampleEvidence(digestFor(key.publicJwk, nonce)), additional_evidence: "" },
      };
      let body = valid as unknown;
      for (let m = r.int(1, 3); m > 0; m--) body = mutate(body, r);
      if (JSON.stringify(body) === JSON.stringify(valid)) continue;
      const text = r.int(0, 9) === 0 ? JSON.stringify(body).slice(0, r.int(0, 40)) : JSON.stringify(body);
      const res = await rawRequest(`${kbs.url}/kbs/v0/attest`, { body: text, headers: { cookie: cookieOf(a) } });
      const ok = res.status === 200;
      if (ok) {
        // Only harmless mutations may pass: the members trustee ignores or accepts (init-data null/absent, extra keys).
        const reparsed = JSON.parse(text);
        expect(reparsed["runtime-data"].nonce, `seed ${seed} case ${i}: ${text}`).toBe(nonce);
        continue;
      }
      expect(res.status, `seed ${seed} case ${i}`).toBe(401);
      expect(JSON.parse(res.body)).toEqual({
        type: "https://github.com/confidential-containers/kbs/errors/AttestationError",
        detail: "Attestation error: RCAR handshake Attest failed",
      });
      rejected++;
    }
    expect(rejected).toBeGreaterThan(120);
  });
});
