// The pure parts of `bind`: the admin JWT (checked with node's own Ed25519 and the test KBS's
// verifier), the key document written without a JS string of the key (read back by the agent's
// own parser), policy templates, reference PCR values from JSON or a real event log.
import * as crypto from "node:crypto";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { describe, expect, it } from "vitest";
import { ed25519SeedFromPem, readAdminTokenFile, signAdminToken } from "../../../agent/provision/admin-token.ts";
import { readPcrValues } from "../../../agent/provision/pcr-values.ts";
import { buildResourcePolicy, parsePolicyTemplate } from "../../../agent/provision/policy-template.ts";
import { resourceValue } from "../../../agent/provision/resource-value.ts";
import { parseKeyResource } from "../../../agent/unlock/key-document.ts";
import { CvmError } from "../../../platform/util/errors.ts";
import { ed25519PublicKeyFromPem, verifyEdDsaJwt } from "../../kbs/admin.ts";

const FIXTURES = path.join(import.meta.dirname, "../../fixtures/eventlog");
const { privateKey, publicKey } = crypto.generateKeyPairSync("ed25519");
const PEM = privateKey.export({ type: "pkcs8", format: "pem" }) as string;
const PUB = publicKey.export({ type: "spki", format: "pem" }) as string;
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "provision-unit-"));
const usage = (fn: () => unknown, msg: RegExp) => {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(CvmError);
    expect((e as CvmError).kind).toBe("usage");
    expect((e as CvmError).message).toMatch(msg);
    return;
  }
  throw new Error("expected a usage error");
};

describe("admin JWT", () => {
  it("is EdDSA over header.payload with role, iat, short exp and the optional iss/aud", () => {
    const t = signAdminToken(PEM, { role: "admin", issuer: "me", audience: "kbs", nowSec: 1000 });
    const [h, p, s] = t.split(".") as [string, string, string];
    expect(JSON.parse(Buffer.from(h, "base64url").toString())).toEqual({ alg: "EdDSA", typ: "JWT" });
    expect(JSON.parse(Buffer.from(p, "base64url").toString())).toEqual({
      iss: "me",
      aud: "kbs",
      role: "admin",
      iat: 1000,
      exp: 1300,
    });
    expect(crypto.verify(null, Buffer.from(`${h}.${p}`), publicKey, Buffer.from(s, "base64url"))).toBe(true);
    expect(verifyEdDsaJwt(t, ed25519PublicKeyFromPem(PUB), 1000)).toMatchObject({ role: "admin" });
    expect(verifyEdDsaJwt(t, ed25519PublicKeyFromPem(PUB), 1300 + 61)).toBeUndefined();
  });

  it("refuses keys that are not unencrypted Ed25519 PKCS#8", () => {
    const ec = crypto
      .generateKeyPairSync("ec", { namedCurve: "P-256" })
      .privateKey.export({ type: "pkcs8", format: "pem" });
    usage(() => ed25519SeedFromPem(ec as string), /not an Ed25519 private key/);
    usage(() => ed25519SeedFromPem(PUB), /no unencrypted PKCS#8/);
    const enc = privateKey.export({ type: "pkcs8", format: "pem", cipher: "aes-256-cbc", passphrase: "x" });
    usage(() => ed25519SeedFromPem(enc as string), /no unencrypted PKCS#8/);
  });

  it("a token file must be a JWT with exp (not past) and role", () => {
    const write = (s: string) => {
      const f = path.join(tmp, crypto.randomBytes(4).toString("hex"));
      fs.writeFileSync(f, s);
      return f;
    };
    const enc = (o: object) => `e30.${Buffer.from(JSON.stringify(o)).toString("base64url")}.c2ln`;
    expect(readAdminTokenFile(write(`${enc({ exp: 2000, role: "a" })}\n`), 1000)).toBe(enc({ exp: 2000, role: "a" }));
    usage(() => readAdminTokenFile(write("hello"), 1000), /does not hold a JWT/);
    usage(() => readAdminTokenFile(write(enc({ role: "a" })), 1000), /no numeric exp/);
    usage(() => readAdminTokenFile(write(enc({ exp: 999, role: "a" })), 1000), /expired at/);
    usage(() => readAdminTokenFile(write(enc({ exp: 2000 })), 1000), /no role claim/);
  });
});

describe("resource value", () => {
  it("the key document is what the agent's parser reads back, for every length mod 3", () => {
    for (let n = 1; n <= 70; n++) {
      const key = crypto.randomBytes(n);
      const pins = { uuid: crypto.randomUUID(), luks2_fingerprint_v2: "c".repeat(64) };
      const doc = resourceValue(key, pins);
      expect(JSON.parse(doc.toString())).toEqual({ cvm_unlock_key: 1, key: key.toString("base64"), pins });
      const parsed = parseKeyResource(doc);
      expect(Buffer.from(parsed.key).equals(key)).toBe(true);
      expect(parsed.pins).toEqual({ uuid: pins.uuid, luks2FingerprintV2: pins.luks2_fingerprint_v2 });
    }
  });

  it("without pins it is a copy of the raw key (the caller zeroes both)", () => {
    const key = crypto.randomBytes(64);
    const v = resourceValue(key, {});
    expect(v.equals(key)).toBe(true);
    key.fill(0);
    expect(v.equals(key)).toBe(false);
  });
});

describe("policy templates", () => {
  it("parses the three templates and refuses malformed values", () => {
    expect(parsePolicyTemplate("tpm-pcrs=12,0,7")).toEqual({ kind: "tpm-pcrs", pcrs: [0, 7, 12] });
    expect(parsePolicyTemplate(`snp-measurement=${"AB".repeat(48)}`)).toEqual({
      kind: "snp-measurement",
      measurement: "ab".repeat(48),
    });
    expect(parsePolicyTemplate(`init-data=${"0".repeat(96)}`).kind).toBe("init-data");
    for (const bad of [
      "tpm-pcrs=",
      "tpm-pcrs=24",
      "tpm-pcrs=1,1",
      "tpm-pcrs=a",
      "snp-measurement=00",
      "init-data=xyz",
      "tdx=1",
    ])
      usage(() => parsePolicyTemplate(bad), /--policy/);
  });

  it("needs a reference value for every PCR and a measurement of the command line", () => {
    usage(
      () => buildResourcePolicy("a/b/c", [{ kind: "tpm-pcrs", pcrs: [7, 12] }], new Map([[12, ["0".repeat(64)]]])),
      /no reference value for PCR 7/,
    );
    usage(
      () => buildResourcePolicy("a/b/c", [{ kind: "tpm-pcrs", pcrs: [0, 7] }], new Map()),
      /do not cover the kernel command line/,
    );
    const rego = buildResourcePolicy("a/b/c", [{ kind: "tpm-pcrs", pcrs: [8] }], new Map([[8, ["1".repeat(64)]]]));
    expect(rego).toContain(`data["resource-path"] == ["a", "b", "c"]`);
    expect(rego).toContain(`.tpm.pcr08 in {"${"1".repeat(64)}"}`);
  });
});

describe("reference PCR values", () => {
  it("from a TCG event log: the SHA-256 replay, zeros for PCRs the log never extends", () => {
    const expected = JSON.parse(fs.readFileSync(path.join(FIXTURES, "expected.json"), "utf8")).tpm[
      "ubuntu-2404-amd-sevsnp.bin"
    ].pcrs.sha256 as Record<string, string>;
    const v = readPcrValues(path.join(FIXTURES, "ubuntu-2404-amd-sevsnp.bin"));
    for (const [pcr, value] of Object.entries(expected)) expect(v.get(Number(pcr)), `PCR ${pcr}`).toEqual([value]);
    const untouched = [...Array(24).keys()].find((i) => !(String(i) in expected))!;
    expect(v.get(untouched)).toEqual(["0".repeat(64)]);
  });

  it("from JSON: pcrNN → value or list; anything else refused", () => {
    const f = path.join(tmp, "ref.json");
    fs.writeFileSync(f, JSON.stringify({ pcr07: "A".repeat(64), pcr12: ["0".repeat(64), "1".repeat(64)] }));
    expect(readPcrValues(f)).toEqual(
      new Map([
        [7, ["a".repeat(64)]],
        [12, ["0".repeat(64), "1".repeat(64)]],
      ]),
    );
    for (const bad of [{ "7": "0".repeat(64) }, { pcr24: "0".repeat(64) }, { pcr07: "00" }, { pcr07: [1] }]) {
      fs.writeFileSync(f, JSON.stringify(bad));
      usage(() => readPcrValues(f), /--pcr-values/);
    }
    fs.writeFileSync(f, "garbage that is no event log");
    usage(() => readPcrValues(f), /neither JSON nor a TCG event log/);
  });
});
