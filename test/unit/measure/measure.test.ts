import { createHash } from "node:crypto";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { describe, expect, it } from "vitest";
import { measureEvent, rtmrPath, type MeasureSettings } from "../../../agent/measure/measure.ts";
import { encodeCbor } from "../../../platform/util/cbor.ts";
import { decodeRecords, LEAVE_INITRD_EVENT, replayExtends, volumeEvent } from "../../../agent/measure/events.ts";
import type { PcrBackend } from "../../../agent/measure/pcr-backend.ts";
import type { BankDigest } from "../../../platform/tpm/commands/pcr.ts";
import { Deadline } from "../../../platform/util/deadline.ts";
import { silentLogger } from "../../../platform/util/log.ts";

const SHA256 = 0x000b;
const SHA384 = 0x000c;
const SM3 = 0x0012;

class FakeTpm implements PcrBackend {
  description = "fake TPM";
  extends: { pcr: number; digests: BankDigest[] }[] = [];
  closed = 0;
  constructor(
    private banks: number[],
    private failExtend = false,
  ) {}
  async activeBanks() {
    return this.banks;
  }
  async extend(pcr: number, digests: BankDigest[]) {
    if (this.failExtend) throw new Error("TPM_RC_LOCALITY");
    this.extends.push({ pcr, digests });
  }
  close() {
    this.closed++;
  }
}

function setup(over: Partial<MeasureSettings> = {}) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "measure-"));
  const settings: MeasureSettings = {
    tpm: "if-present",
    pcr: 15,
    rtmr: 3,
    rtmr_mode: "if-present",
    record_path: path.join(dir, "run/measurements.cbor"),
    ...over,
  };
  return { dir, settings };
}
const h = (alg: string, s: string | Uint8Array) => new Uint8Array(createHash(alg).update(s).digest());

describe("measurement", () => {
  it("uses the documented event strings", () => {
    expect(volumeEvent("root", "6D1E7C52-2B4F-4D3E-9A51-0C3B8F2E7A10")).toBe(
      "cryptsetup:root:6d1e7c52-2b4f-4d3e-9a51-0c3b8f2e7a10",
    );
    expect(LEAVE_INITRD_EVENT).toBe("cvm-unlock:leave-initrd");
  });

  it("extends every active bank with H_bank(event) and records it; the record replays to the register", async () => {
    const { dir, settings } = setup();
    const tpm = new FakeTpm([SHA256, SHA384]);
    const env = {
      root: dir,
      tpmSpec: "/dev/tpmrm0",
      deadline: new Deadline(5000),
      log: silentLogger,
      openBackend: async () => tpm,
    };
    const ev = volumeEvent("root", "6d1e7c52-2b4f-4d3e-9a51-0c3b8f2e7a10");
    await measureEvent(settings, env, "volume", ev, "opened");
    await measureEvent(settings, env, "leave-initrd", LEAVE_INITRD_EVENT, "opened:root");
    expect(tpm.extends.map((e) => e.pcr)).toEqual([15, 15]);
    expect(tpm.extends[0]!.digests).toEqual([
      { hashAlg: SHA256, digest: h("sha256", ev) },
      { hashAlg: SHA384, digest: h("sha384", ev) },
    ]);
    expect(tpm.closed).toBe(2);
    const recs = decodeRecords(fs.readFileSync(settings.record_path));
    expect(recs.map((r) => [r.kind, r.event, r.outcome])).toEqual([
      ["volume", ev, "opened"],
      ["leave-initrd", LEAVE_INITRD_EVENT, "opened:root"],
    ]);
    const replayed = replayExtends(
      (b) => h("sha256", b),
      new Uint8Array(32),
      recs.map((r) => new Uint8Array(r.pcr!.digests.sha256!)),
    );
    const expected = h(
      "sha256",
      Buffer.concat([
        h("sha256", Buffer.concat([new Uint8Array(32), h("sha256", ev)])),
        h("sha256", LEAVE_INITRD_EVENT),
      ]),
    );
    expect(Buffer.from(replayed).toString("hex")).toBe(Buffer.from(expected).toString("hex"));
  });

  it("refuses to leave an active bank it cannot compute (SM3)", async () => {
    const { dir, settings } = setup();
    const tpm = new FakeTpm([SHA256, SM3]);
    await expect(
      measureEvent(
        settings,
        { root: dir, tpmSpec: "x", deadline: new Deadline(5000), log: silentLogger, openBackend: async () => tpm },
        "volume",
        "e",
      ),
    ).rejects.toThrow(/sm3_256/);
    expect(tpm.extends).toEqual([]);
    expect(fs.existsSync(settings.record_path)).toBe(false);
  });

  it("a present TPM that fails is an error in every mode", async () => {
    const { dir, settings } = setup();
    await expect(
      measureEvent(
        settings,
        {
          root: dir,
          tpmSpec: "x",
          deadline: new Deadline(5000),
          log: silentLogger,
          openBackend: async () => new FakeTpm([SHA256], true),
        },
        "volume",
        "e",
      ),
    ).rejects.toThrow(/extending PCR 15 on fake TPM failed: TPM_RC_LOCALITY/);
  });

  it("no TPM device: skipped when if-present, an error when required", async () => {
    const { dir, settings } = setup({ rtmr_mode: "off" });
    const env = { root: dir, tpmSpec: "/dev/tpmrm0", deadline: new Deadline(5000), log: silentLogger };
    const rec = await measureEvent(settings, env, "volume", "e");
    expect(rec.pcr).toBeUndefined();
    await expect(measureEvent({ ...settings, tpm: "required" }, env, "volume", "e")).rejects.toThrow(
      /no TPM at \/dev\/tpmrm0.*required/,
    );
  });

  it("extends the TDX RTMR with one 48-byte SHA-384 write when tsm-mr is present", async () => {
    const { dir, settings } = setup({ tpm: "off" });
    const p = rtmrPath(dir, 3);
    fs.mkdirSync(path.dirname(p), { recursive: true });
    fs.writeFileSync(p, Buffer.alloc(48, 0xee)); // stand-in; the kernel file extends on write
    const rec = await measureEvent(
      settings,
      { root: dir, tpmSpec: "x", deadline: new Deadline(5000), log: silentLogger },
      "leave-initrd",
      LEAVE_INITRD_EVENT,
    );
    expect(Buffer.from(fs.readFileSync(p)).equals(Buffer.from(h("sha384", LEAVE_INITRD_EVENT)))).toBe(true);
    expect(rec.rtmr?.index).toBe(3);
    await expect(
      measureEvent(
        { ...settings, rtmr: 2, rtmr_mode: "required" },
        { root: dir, tpmSpec: "x", deadline: new Deadline(5000), log: silentLogger },
        "v",
        "e",
      ),
    ).rejects.toThrow(/no TDX RTMR/);
  });

  it("decodeRecords refuses garbage", () => {
    expect(() => decodeRecords(new Uint8Array([0xff, 0x00]))).toThrow(/CBOR|record/);
    expect(() => decodeRecords(new Uint8Array([0xa1, 0x61, 0x76, 0x02]))).toThrow(/not a version 1/);
    const base = { v: 1, kind: "volume", event: "cryptsetup:root:x", time: 0 };
    expect(() =>
      decodeRecords(encodeCbor({ ...base, pcr: { index: 15, digests: { sha256: new Uint8Array(3) } } })),
    ).toThrow(/pcr.digests/);
    expect(() => decodeRecords(encodeCbor({ ...base, pcr: { index: 99, digests: {} } }))).toThrow(/pcr.index/);
    expect(() => decodeRecords(encodeCbor({ ...base, rtmr: { index: 3, digest: new Uint8Array(32) } }))).toThrow(
      /48 bytes/,
    );
    expect(decodeRecords(encodeCbor({ ...base, rtmr: { index: 3, digest: new Uint8Array(48) } }))[0]!.rtmr!.index).toBe(
      3,
    );
  });
});
