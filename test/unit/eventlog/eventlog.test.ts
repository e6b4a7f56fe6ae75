import * as fs from "node:fs";
import * as path from "node:path";
import * as zlib from "node:zlib";
import { describe, expect, it } from "vitest";
import { sha256 } from "@noble/hashes/sha2.js";
import { algorithmId, TPM_ALG_SHA1, TPM_ALG_SHA256, TPM_ALG_SHA384 } from "../../../platform/eventlog/algorithms.ts";
import { compareRegisters } from "../../../platform/eventlog/compare.ts";
import { describeEvent } from "../../../platform/eventlog/details.ts";
import { encodeEventLog } from "../../../platform/eventlog/encode.ts";
import { parseCcelLog, parseCcelTable, trimCcel } from "../../../platform/eventlog/ccel.ts";
import { parseEventLog } from "../../../platform/eventlog/parse.ts";
import { replay, startupLocality } from "../../../platform/eventlog/replay.ts";
import { parseTdxQuote } from "../../../platform/tdx/quote.ts";
import { trusteeEventClaims } from "../../../platform/tdx/claims.ts";
import { ParseError } from "../../../platform/util/errors.ts";
import { concat, hex } from "../../../platform/util/bytes.ts";
import { prng } from "../../helpers/prng.ts";

const DIR = path.join(import.meta.dirname, "../../fixtures/eventlog");
const TDX = path.join(import.meta.dirname, "../../fixtures/tdx");
const load = (p: string) => {
  const b = fs.readFileSync(p);
  return new Uint8Array(p.endsWith(".gz") ? zlib.gunzipSync(b) : b);
};
const expected = JSON.parse(fs.readFileSync(path.join(DIR, "expected.json"), "utf8")) as {
  tpm: Record<string, { events: number; banks: string[]; pcrs: Record<string, Record<string, string>> }>;
  ccel: Record<string, { events: number; length: number; area: number; mr: Record<string, string> }>;
};

describe("TCG event logs: parse + replay reproduce the published PCRs", () => {
  for (const [name, want] of Object.entries(expected.tpm)) {
    it(name, () => {
      const log = parseEventLog(load(path.join(DIR, name)));
      expect(log.events.length).toBe(want.events);
      expect(log.algorithms.map((a) => a.name)).toEqual(want.banks);
      expect(log.end).toBe("eof");
      const pcrs = replay(log, { kind: "pcr" });
      let compared = 0;
      for (const [bank, values] of Object.entries(want.pcrs)) {
        const alg = algorithmId(bank)!;
        for (const [idx, value] of Object.entries(values)) {
          const got = pcrs.get(Number(idx))?.get(alg);
          expect(got ? hex(got) : "0".repeat(value.length), `${bank} PCR${idx}`).toBe(value);
          compared++;
        }
      }
      expect(compared).toBeGreaterThan(7);
    });
  }

  it("reads the legacy SHA-1 format (no Spec ID event)", () => {
    const log = parseEventLog(load(path.join(DIR, "event-uefi-sha1-log.bin")));
    expect(log.format).toBe("sha1");
    expect(log.specId).toBeUndefined();
    expect(log.events[0]!.digests.get(TPM_ALG_SHA1)!.length).toBe(20);
  });

  it("names event types and keeps event data", () => {
    const log = parseEventLog(load(path.join(DIR, "binary_bios_measurements")));
    const sep = log.events.filter((e) => e.typeName === "EV_SEPARATOR");
    expect(sep.length).toBeGreaterThanOrEqual(8);
    expect(hex(sep[0]!.data)).toBe("00000000");
    expect(log.events.some((e) => e.typeName === "EV_EFI_BOOT_SERVICES_APPLICATION")).toBe(true);
    expect(log.specId!.specVersion).toBe("2.0");
  });

  it("rejects tpm2-tools' specid-vendordata.bin, whose vendorInfo overruns EventSize", () => {
    let err: unknown;
    try {
      parseEventLog(load(path.join(DIR, "specid-vendordata.bin")));
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ParseError);
    expect((err as ParseError).field).toBe("SpecIdEvent.vendorInfo");
    expect((err as ParseError).offset).toBe(69);
  });

  it("re-encodes every crypto-agile log byte for byte", () => {
    for (const name of Object.keys(expected.tpm).filter((n) => n !== "event-uefi-sha1-log.bin")) {
      const bytes = load(path.join(DIR, name));
      const log = parseEventLog(bytes);
      expect(hex(encodeEventLog(log.specId!, log.events)), name).toBe(hex(bytes.subarray(0, log.length)));
    }
  });
});

describe("compareRegisters", () => {
  it("accepts the published PCRs and names the one that differs", () => {
    const want = expected.tpm["ubuntu-2404-amd-sevsnp.bin"]!;
    const actual = new Map<number, Map<number, Uint8Array>>();
    for (const [bank, values] of Object.entries(want.pcrs))
      for (const [idx, v] of Object.entries(values))
        (actual.get(Number(idx)) ?? actual.set(Number(idx), new Map()).get(Number(idx))!).set(
          algorithmId(bank)!,
          Uint8Array.from(Buffer.from(v, "hex")),
        );
    // PCR 10 is untouched by the log: it must read as zeros.
    actual.set(10, new Map([[TPM_ALG_SHA256, new Uint8Array(32)]]));
    const replayed = replay(parseEventLog(load(path.join(DIR, "ubuntu-2404-amd-sevsnp.bin"))), { kind: "pcr" });
    expect(compareRegisters(replayed, actual)).toEqual([]);
    actual.get(7)!.get(TPM_ALG_SHA256)![0]! ^= 1;
    actual.set(11, new Map([[TPM_ALG_SHA384, new Uint8Array(48).fill(1)]]));
    expect(compareRegisters(replayed, actual).map((m) => `${m.index}/${m.algName}`)).toEqual(["7/sha256", "11/sha384"]);
  });
});

describe("event details for people", () => {
  it("names UEFI variables, loaded images and firmware strings", () => {
    const log = parseEventLog(load(path.join(DIR, "rhel8-uefi.bin")));
    const d = log.events.map((e) => describeEvent(e));
    expect(d[0]).toBe("GCE Virtual Firmware v1");
    expect(d[2]).toBe("SecureBoot (8be4df61-93ca-11d2-aa0d-00e098032b8c), 1 data bytes");
    expect(d[7]).toBe("separator 00000000");
    expect(d[22]).toMatch(/\/EFI\/redhat\/shimx64\.efi$/);
    expect(d[27]).toBe("grub_cmd set pager=1");
  });

  it("never throws on garbage payloads", () => {
    const r = prng(5);
    for (let i = 0; i < 2000; i++) {
      const type = r.pick([0x80000001, 0x80000002, 0x80000003, 0x80000005, 0x8000000a, 0x8000000b, 0x4, 0x8, 0xd, 0x3]);
      expect(() => describeEvent({ type, data: r.bytes(r.int(0, 120)) })).not.toThrow();
    }
  });
});

describe("StartupLocality", () => {
  it("starts PCR0 at the locality and is not replayed as an event", () => {
    const alg = [{ id: TPM_ALG_SHA256, name: "sha256", size: 32 }];
    const spec = { platformClass: 0, specErrata: 0, uintnSize: 2, algorithms: alg, vendorInfo: new Uint8Array() };
    const loc = new Uint8Array(17);
    loc.set(new TextEncoder().encode("StartupLocality\0"));
    loc[16] = 3;
    const d = new Uint8Array(32).fill(1);
    const bytes = encodeEventLog(spec, [
      { index: 0, type: 3, digests: new Map([[TPM_ALG_SHA256, new Uint8Array(32)]]), data: loc },
      { index: 0, type: 8, digests: new Map([[TPM_ALG_SHA256, d]]), data: new Uint8Array(2) },
    ]);
    const log = parseEventLog(bytes);
    expect(startupLocality(log)).toBe(3);
    const start = new Uint8Array(32);
    start[31] = 3;
    const want = sha256(concat(start, d));
    expect(hex(replay(log, { kind: "pcr" }).get(0)!.get(TPM_ALG_SHA256)!)).toBe(hex(want));
  });
});

describe("CCEL", () => {
  const files: Record<string, string> = {
    "ccel_data.dat": path.join(TDX, "ccel_data.dat.gz"),
    "CCEL_unpadded.data.bin": path.join(DIR, "CCEL_unpadded.data.bin"),
    CCEL_data: path.join(DIR, "CCEL_data.gz"),
    CCEL_data_ovmf: path.join(DIR, "CCEL_data_ovmf"),
  };
  for (const [name, want] of Object.entries(expected.ccel)) {
    it(`${name}: ${want.events} events, log ends at ${want.length}, RTMRs replay`, () => {
      const area = load(files[name]!);
      expect(area.length).toBe(want.area);
      const log = parseCcelLog(area);
      expect(log.events.length).toBe(want.events);
      expect(log.length).toBe(want.length);
      expect(trimCcel(area).length).toBe(want.length);
      const rtmrs = replay(log, { kind: "rtmr" });
      expect([...rtmrs.keys()]).toEqual([0, 1, 2, 3]);
      for (let mr = 1; mr <= 4; mr++) {
        const v = hex(rtmrs.get(mr - 1)!.get(TPM_ALG_SHA384)!);
        expect(v, `MR${mr}`).toBe(want.mr[String(mr)] ?? "0".repeat(96));
      }
    });
  }

  it("go-tdx-guest ccel_data.dat replays EXACTLY to RTMR0..3 of cos-113-tdx-quote.dat", () => {
    const quote = parseTdxQuote(load(path.join(TDX, "cos-113-tdx-quote.dat")));
    const rtmrs = replay(parseCcelLog(load(path.join(TDX, "ccel_data.dat.gz"))), { kind: "rtmr" });
    for (let i = 0; i < 4; i++) expect(hex(rtmrs.get(i)!.get(TPM_ALG_SHA384)!)).toBe(hex(quote.body.rtmrs[i]!));
    expect(hex(quote.body.rtmrs[0]!)).toMatch(/^3fa2f61f/);
  });

  it("trims like guest-components: stops at 8×0xFF or 8×0x00, both paddings", () => {
    const area = load(path.join(DIR, "CCEL_data_ovmf"));
    const log = parseCcelLog(area);
    const body = area.subarray(0, log.length);
    for (const pad of [0x00, 0xff]) {
      const padded = concat(body, new Uint8Array(4096).fill(pad));
      expect(hex(trimCcel(padded))).toBe(hex(body));
    }
    // Nothing to trim: a log that ends exactly at the end of its area.
    expect(trimCcel(body).length).toBe(body.length);
    expect(parseCcelLog(body).end).toBe("eof");
  });

  it("parses the AAEL-extended log guest-components sends (with appended events and end flag)", () => {
    const log = parseCcelLog(load(path.join(DIR, "CCEL_AAEL_alibabacloud")));
    expect(log.events.length).toBe(87);
    expect(log.end).toBe("terminator");
    const last = log.events.at(-1)!;
    expect(last.index).toBe(4);
    expect(last.typeName).toBe("EV_EVENT_TAG");
  });

  it("an SM3-only (Hygon CSV) log parses but cannot be replayed to RTMRs", () => {
    const log = parseCcelLog(load(path.join(DIR, "CCEL_data_csv")));
    expect(log.algorithms.map((a) => a.name)).toEqual(["sm3_256"]);
    expect(log.events.length).toBe(82);
    expect(() => replay(log, { kind: "rtmr" })).toThrow(/SHA-384/);
  });

  it("refuses a legacy SHA-1 log as CCEL", () => {
    expect(() => parseCcelLog(load(path.join(DIR, "event-uefi-sha1-log.bin")))).toThrow(ParseError);
  });

  it("event claims match trustee's uefi_event_logs for CCEL_data", () => {
    const want = JSON.parse(fs.readFileSync(path.join(TDX, "parse_tdx_claims_expected.json"), "utf8"))
      .uefi_event_logs as Array<Record<string, unknown>>;
    const got = trusteeEventClaims(parseCcelLog(load(path.join(DIR, "CCEL_data.gz"))));
    expect(got.length).toBe(want.length);
    got.forEach((g, i) => {
      for (const k of ["index", "type_name", "digests", "event", "digest_matches_event"])
        expect(g[k], `event ${i} ${k}`).toEqual(want[i]![k]);
    });
  });

  it("decodes the ACPI CCEL table", () => {
    const t = parseCcelTable(load(path.join(TDX, "ccel_table.dat")));
    expect(t.oemId).toBe("INTEL");
    expect(t.ccType).toBe(2);
    expect(t.ccTypeName).toBe("TDX");
    expect(t.laml).toBe(0x40000n);
    expect(t.lasa).toBe(0xbedbf000n);
    expect(t.checksumOk).toBe(true);
    const g = parseCcelTable(load(path.join(DIR, "CCEL.bin")));
    expect(g.laml).toBe(0x10000n);
    expect(() => parseCcelTable(load(path.join(TDX, "ccel_table.dat")).subarray(0, 40))).toThrow(ParseError);
  });
});

describe("hostile input", () => {
  it("an unknown digest algorithm in an event names the field and offset", () => {
    const area = load(path.join(DIR, "CCEL_unpadded.data.bin"));
    const log = parseCcelLog(area);
    const bad = area.slice();
    const at = log.events[1]!.offset + 12; // hashAlg of the first digest
    bad[at] = 0x99;
    try {
      parseCcelLog(bad);
      expect.unreachable();
    } catch (e) {
      expect(e).toBeInstanceOf(ParseError);
      expect((e as ParseError).field).toBe("Digests[0].hashAlg");
      expect((e as ParseError).offset).toBe(at);
    }
  });

  it("a huge EventSize is refused without allocating", () => {
    const area = load(path.join(DIR, "CCEL_unpadded.data.bin")).slice();
    const log = parseCcelLog(area);
    const e = log.events[2]!;
    const sizeAt = e.offset + 12 + 2 + 48;
    new DataView(area.buffer).setUint32(sizeAt, 0xfffffff0, true);
    expect(() => parseCcelLog(area)).toThrow(/EventSize/);
  });

  it("an MR index beyond RTMR3 cannot be replayed", () => {
    const spec = {
      platformClass: 0,
      specErrata: 0,
      uintnSize: 2,
      algorithms: [{ id: TPM_ALG_SHA384, name: "sha384", size: 48 }],
      vendorInfo: new Uint8Array(),
    };
    const log = parseCcelLog(
      encodeEventLog(spec, [
        { index: 5, type: 0xd, digests: new Map([[TPM_ALG_SHA384, new Uint8Array(48)]]), data: new Uint8Array() },
      ]),
    );
    expect(() => replay(log, { kind: "rtmr" })).toThrow(/MR index 5/);
  });
});
