import { describe, expect, it } from "vitest";
import { sha384 } from "@noble/hashes/sha2.js";
import { attestRequestBody, authRequestBody } from "../../../agent/kbs/client.ts";
import { canonicalize } from "../../../agent/kbs/jcs.ts";
import {
  deviceRuntimeDataJcs,
  primaryRuntimeDataJcs,
  reportDataFor,
  runtimeDigest,
  selectHashAlgorithm,
  type RuntimeData,
} from "../../../agent/kbs/runtime-data.ts";
import { EC_COORD_BYTES, generateTeeKey } from "../../../agent/kbs/tee-key.ts";
import { sampleSource } from "../../../platform/sample/index.ts";
import { CvmError } from "../../../platform/util/errors.ts";
import { runtimeVectors as rv } from "./helpers/vectors.ts";

const hex = (b: Uint8Array) => Buffer.from(b).toString("hex");
const runtime: RuntimeData = { nonce: rv.inputs.challenge_nonce, "tee-pubkey": rv.inputs.tee_pubkey };

describe("runtime data (docs/spec/kbs-protocol.md §2)", () => {
  it("upstream vector: trustee parse_runtimedata_json_binding", () => {
    const u = rv.upstream_check_vector;
    expect(canonicalize(u.input)).toBe(u.canonical);
    expect(hex(sha384(new TextEncoder().encode(canonicalize({ b: 1, a: "test", c: { d: "e" } }))))).toBe(
      "e71ce8e70d814ba6639c3612ebee0ff1f76f650f8dbb5e47157e0f3f525cd22c4597480a186427c813ca941da78870c3",
    );
  });

  it("primary runtime data JCS and SHA-384/SHA-512 digests match the generated vector", () => {
    expect(primaryRuntimeDataJcs(runtime)).toBe(rv.primary_runtime_data_canonical_json);
    expect(hex(runtimeDigest(runtime))).toBe(rv.primary_sha384_hex);
    expect(hex(runtimeDigest(runtime, "sha512"))).toBe(rv.primary_sha512_hex_for_se);
    expect(deviceRuntimeDataJcs(runtime)).toBe(rv.additional_device_runtime_data_canonical_json);
  });

  it("additional evidence string is part of the primary hash", () => {
    const w = rv.with_sample_device;
    expect(primaryRuntimeDataJcs(runtime, w.additional_evidence_string)).toBe(w.primary_runtime_data_canonical_json);
    expect(hex(runtimeDigest(runtime, "sha384", w.additional_evidence_string))).toBe(w.primary_sha384_hex);
  });

  it("extra JWK members would change the digest (so the key must carry only typed members)", async () => {
    const withExt = { ...runtime, "tee-pubkey": { ...runtime["tee-pubkey"], ext: true } } as unknown as RuntimeData;
    expect(hex(runtimeDigest(withExt))).not.toBe(rv.primary_sha384_hex);
    for (const type of ["ec-p256", "ec-p521", "rsa-oaep-256"] as const) {
      const k = await generateTeeKey(type);
      const keys = Object.keys(k.publicJwk);
      expect(keys).toEqual(k.publicJwk.kty === "EC" ? ["kty", "crv", "alg", "x", "y"] : ["kty", "alg", "n", "e"]);
      if (k.publicJwk.kty === "EC") {
        expect(k.publicJwk.alg).toBe("ECDH-ES+A256KW");
        for (const c of [k.publicJwk.x, k.publicJwk.y]) {
          expect(c).toMatch(/^[A-Za-z0-9_-]+$/);
          expect(Buffer.from(c, "base64url").length).toBe(EC_COORD_BYTES[k.publicJwk.crv]);
        }
      } else {
        expect(k.publicJwk.alg).toBe("RSA-OAEP-256");
        expect(Buffer.from(k.publicJwk.n, "base64url").length).toBe(256);
        expect(k.publicJwk.e).toBe("AQAB");
      }
      expect(k.privateKey.extractable).toBe(false);
    }
  });

  it("per-TEE report data padding", () => {
    const d = Buffer.from(rv.primary_sha384_hex, "hex");
    expect(hex(reportDataFor("snp", d))).toBe(rv.snp_tdx_sgx_cca_report_data_64_hex);
    expect(hex(reportDataFor("tdx", d))).toBe(rv.snp_tdx_sgx_cca_report_data_64_hex);
    expect(hex(reportDataFor("tpm", d))).toBe(rv.tpm_qualifying_data_32_hex);
    for (const t of ["az-snp-vtpm", "az-tdx-vtpm", "azsnpvtpm", "aztdxvtpm", "sample"] as const)
      expect(hex(reportDataFor(t, d))).toBe(rv.az_vtpm_tpm_nonce_hex);
    expect(reportDataFor("sample", d)).not.toBe(d); // a copy: callers may zero/modify it
    expect(() => reportDataFor("snp", new Uint8Array(65))).toThrow(CvmError);
    expect(() => reportDataFor("tpm", new Uint8Array(20))).toThrow(/shorter than TPM qualifyingData/);
  });

  it("the sample source turns the digest into the vector's sample evidence", async () => {
    const ev = await sampleSource.collect({} as never, { runtimeDigest: runtimeDigest(runtime), tee: "sample" });
    expect(ev.primary).toEqual(rv.sample_evidence);
  });

  it("hash selection: SHA-384 unless the challenge selects sha512; other selections refused", () => {
    expect(selectHashAlgorithm("")).toBe("sha384");
    expect(selectHashAlgorithm({})).toBe("sha384");
    expect(selectHashAlgorithm(null)).toBe("sha384");
    expect(selectHashAlgorithm({ "selected-hash-algorithm": "SHA512" })).toBe("sha512");
    expect(selectHashAlgorithm({ "selected-hash-algorithm": "sha384" })).toBe("sha384");
    expect(() => selectHashAlgorithm({ "selected-hash-algorithm": "sm3" })).toThrow(/selected hash algorithm "sm3"/);
    expect(() => selectHashAlgorithm({ "selected-hash-algorithm": 5 })).toThrow(CvmError);
  });

  it("request bodies are byte-identical to the reference client's", () => {
    expect(authRequestBody("sample")).toBe(rv.auth_request_body_json);
    expect(attestRequestBody(runtime, rv.sample_evidence)).toBe(rv.attest_request_body_sample_json);
    expect(JSON.parse(attestRequestBody(runtime, {}, 'version = "0.1.0"\n'))["init-data"]).toEqual({
      format: "toml",
      body: 'version = "0.1.0"\n',
    });
  });
});
