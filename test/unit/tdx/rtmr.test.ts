// ccelRtmrMismatches: the one CCEL-vs-quote comparison shared by the tdx source, `inspect` and the
// test KBS, on go-tdx-guest's real quote + CCEL pair and on a stand-in pair.
import * as fs from "node:fs";
import * as path from "node:path";
import * as zlib from "node:zlib";
import { describe, expect, it } from "vitest";
import { parseCcelLog } from "../../../platform/eventlog/ccel.ts";
import { parseTdxQuote } from "../../../platform/tdx/quote.ts";
import { ccelRtmrMismatches } from "../../../platform/tdx/rtmr.ts";
import { makeCcel, makeTdxQuote } from "../../helpers/tdx-fixtures.ts";

const DIR = path.join(import.meta.dirname, "../../fixtures/tdx");

describe("ccelRtmrMismatches", () => {
  it("go-tdx-guest's CCEL replays exactly to RTMR0..3 of its quote", () => {
    const log = parseCcelLog(new Uint8Array(zlib.gunzipSync(fs.readFileSync(path.join(DIR, "ccel_data.dat.gz")))));
    const quote = parseTdxQuote(new Uint8Array(fs.readFileSync(path.join(DIR, "cos-113-tdx-quote.dat"))));
    expect(ccelRtmrMismatches(log, quote)).toEqual([]);
  });

  it("names exactly the RTMR that differs, with both values", () => {
    const ccel = makeCcel();
    const rtmrs = ccel.rtmrs.map((m) => m.slice());
    rtmrs[2]![0]! ^= 1;
    const quote = parseTdxQuote(makeTdxQuote({ version: 4, reportData: new Uint8Array(64), rtmrs }));
    const log = parseCcelLog(ccel.area);
    const got = ccelRtmrMismatches(log, quote);
    expect(got.map((m) => m.index)).toEqual([2]);
    expect(Buffer.from(got[0]!.replayed)).toEqual(Buffer.from(ccel.rtmrs[2]!));
    expect(Buffer.from(got[0]!.actual)).toEqual(Buffer.from(rtmrs[2]!));
    expect(
      ccelRtmrMismatches(
        log,
        parseTdxQuote(makeTdxQuote({ version: 5, reportData: new Uint8Array(64), rtmrs: ccel.rtmrs })),
      ),
    ).toEqual([]);
  });
});
