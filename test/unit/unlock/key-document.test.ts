import * as fs from "node:fs";
import * as path from "node:path";
import { describe, expect, it } from "vitest";
import { checkPins, parseKeyResource } from "../../../agent/unlock/key-document.ts";
import { luks2DigestFingerprint } from "../../../agent/unlock/fingerprint.ts";
import { parseLuks2Header } from "../../../platform/luks/luks2-header.ts";
import { CvmError } from "../../../platform/util/errors.ts";

const FIX = path.join(import.meta.dirname, "../../fixtures/unlock");
const header = parseLuks2Header(new Uint8Array(fs.readFileSync(path.join(FIX, "luks2-header.bin")).subarray(0, 16384)));
const UUID = "6d1e7c52-2b4f-4d3e-9a51-0c3b8f2e7a10";
// Computed independently with python3 (json.dumps sort_keys, compact separators; see PROVENANCE.md).
const FINGERPRINT = "669a378b76568be182d877603a7b05075b1359ee67ff9ee1fa16a1295a5f5b11";

const doc = (o: unknown) => Buffer.from(JSON.stringify(o));

describe("key resource: raw key or versioned key document", () => {
  it("takes binary bytes as a raw key without copying", () => {
    const raw = Buffer.from([1, 2, 3, 0x7b, 0]);
    const k = parseKeyResource(raw);
    expect(k.format).toBe("raw");
    expect(k.key).toBe(raw);
    expect(k.pins).toEqual({});
  });

  it("treats a '{'-prefixed non-JSON or foreign JSON as a raw key", () => {
    expect(parseKeyResource(Buffer.from("{garbage")).format).toBe("raw");
    expect(parseKeyResource(doc({ other: 1 })).format).toBe("raw");
  });

  it("decodes a document with pins", () => {
    const k = parseKeyResource(
      doc({
        cvm_unlock_key: 1,
        key: Buffer.from("secret-key").toString("base64"),
        pins: { uuid: UUID.toUpperCase(), luks2_digest_sha256: FINGERPRINT },
      }),
    );
    expect(k.format).toBe("document");
    expect(k.key.toString()).toBe("secret-key");
    expect(k.pins).toEqual({ uuid: UUID, luks2DigestSha256: FINGERPRINT });
    // The key owns its memory (not a slice of Buffer's shared pool), so zeroing it leaves no copy there.
    expect(k.key.byteOffset).toBe(0);
    expect(k.key.buffer.byteLength).toBe(k.key.length);
    for (const n of [1, 31, 32, 33, 64, 8192])
      expect(
        parseKeyResource(doc({ cvm_unlock_key: 1, key: Buffer.alloc(n, 7).toString("base64") })).key.equals(
          Buffer.alloc(n, 7),
        ),
      ).toBe(true);
    expect(() => parseKeyResource(doc({ cvm_unlock_key: 1, key: Buffer.alloc(8193).toString("base64") }))).toThrow(
      /1\.\.8192 bytes/,
    );
  });

  it("refuses malformed documents instead of using them as raw keys", () => {
    const bad: [unknown, RegExp][] = [
      [{ cvm_unlock_key: 2, key: "AA==" }, /version 2/],
      [{ cvm_unlock_key: 1, key: "AA==", extra: 1 }, /unknown member/],
      [{ cvm_unlock_key: 1, key: "not base64!" }, /base64/],
      [{ cvm_unlock_key: 1, key: "" }, /1\.\.8192/],
      [{ cvm_unlock_key: 1, key: "AA==", pins: { uuid: "x" } }, /pins.uuid/],
      [{ cvm_unlock_key: 1, key: "AA==", pins: { luks2_digest_sha256: "abc" } }, /64 hex/],
      [{ cvm_unlock_key: 1, key: "AA==", pins: { tpm: 1 } }, /unknown pin/],
      [{ cvm_unlock_key: 1, key: "AA==", pins: [] }, /must be an object/],
    ];
    for (const [d, re] of bad) {
      const e = (() => {
        try {
          parseKeyResource(doc(d));
        } catch (x) {
          return x;
        }
      })();
      expect(e, JSON.stringify(d)).toBeInstanceOf(CvmError);
      expect((e as CvmError).message).toMatch(re);
    }
    expect(() => parseKeyResource(Buffer.alloc(0))).toThrow(/empty/);
    expect(() => parseKeyResource(Buffer.alloc(9000, 1))).toThrow(/at most 8192/);
  });

  it("fingerprints the digests section as documented (independently computed value)", () => {
    expect(luks2DigestFingerprint(header)).toBe(FINGERPRINT);
  });

  it("the fingerprint ignores keyslot assignment but follows the volume-key digest", () => {
    const json = header.json;
    const moved = {
      ...header,
      json: { ...json, digests: { "0": { ...json.digests["0"]!, keyslots: ["0", "1", "7"] } } },
    };
    expect(luks2DigestFingerprint(moved)).toBe(FINGERPRINT);
    const rekeyed = { ...header, json: { ...json, digests: { "0": { ...json.digests["0"]!, digest: "AAAA" } } } };
    expect(luks2DigestFingerprint(rekeyed)).not.toBe(FINGERPRINT);
  });

  it("checkPins accepts the matching volume and refuses a swapped one", () => {
    expect(() => checkPins({ uuid: UUID, luks2DigestSha256: FINGERPRINT }, header, "/dev/x")).not.toThrow();
    expect(() => checkPins({}, header, "/dev/x")).not.toThrow();
    expect(() => checkPins({ uuid: "00000000-0000-0000-0000-000000000000" }, header, "/dev/x")).toThrow(
      /pinned to 00000000/,
    );
    const e = (() => {
      try {
        checkPins({ luks2DigestSha256: "0".repeat(64) }, header, "/dev/x");
      } catch (x) {
        return x as CvmError;
      }
    })();
    expect(e?.kind).toBe("volume");
    expect(e?.message).toMatch(/fingerprint .* does not match the pin/);
  });
});
