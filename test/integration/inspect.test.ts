// `cvm-unlock inspect` (the compiled binary) on real vector files and on truncated copies.
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import * as zlib from "node:zlib";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { EXIT_CODES } from "../../platform/util/errors.ts";
import { ensureBinary, runCli } from "../helpers/binary.ts";

const FIX = path.join(import.meta.dirname, "../fixtures");
let work: string;

beforeAll(() => {
  ensureBinary();
  work = fs.mkdtempSync(path.join(os.tmpdir(), "inspect-it-"));
  fs.writeFileSync(
    path.join(work, "ccel_data.dat"),
    zlib.gunzipSync(fs.readFileSync(path.join(FIX, "tdx/ccel_data.dat.gz"))),
  );
});
afterAll(() => fs.rmSync(work, { recursive: true, force: true }));

const cases: Array<[file: string, type: string, mustContain: RegExp]> = [
  ["tdx/tdx_quote_4.dat", "tdx-quote", /MRTD: +705ee9381b8633a9/],
  ["tdx/quote_v5_sample.dat", "tdx-quote", /version: +5 \(body type 3 = TD 1\.5\)/],
  ["tdx/tdx_prod_quote_SPR_E4.dat", "tdx-quote", /trailing bytes: +39/],
  ["tdx/tdx_report_1.bin", "tdx-report", /TDREPORT/],
  ["tdx/ccel_table.dat", "ccel-table", /CC type: +2 \(TDX\)/],
  [
    "eventlog/binary_bios_measurements",
    "eventlog",
    /PCR7 sha256: +41977a9f2eac0dd9d8aec1c3c677ff9a717d69d147bcc923da779f7417c65e69/,
  ],
  ["eventlog/CCEL_data_ovmf", "ccel", /RTMR2 sha384: +94eaf7a7bf398ed8/],
  ["snp/teekit-sev-gcp.bin", "snp-report", /firmware: +current 1\.55\.35/],
  ["azure/kinvolk/hcl-report-tdx.bin", "hcl-report", /claims binding: +REPORT_DATA\[0:32\] == SHA-256/],
];

describe("cvm-unlock inspect", () => {
  for (const [file, type, re] of cases) {
    it(`${file}: detected as ${type}, text and JSON`, async () => {
      const p = path.join(FIX, file);
      const text = await runCli(["inspect", p]);
      expect(text.code, text.stderr).toBe(0);
      expect(text.stdout.toString()).toMatch(re);
      const json = await runCli(["inspect", "--json", p]);
      expect(json.code, json.stderr).toBe(0);
      expect(JSON.parse(json.stdout.toString()).type).toBe(type);
    });
  }

  it("the go-tdx-guest CCEL replays to the cos-113 quote's RTMRs (both printed by inspect)", async () => {
    const log = JSON.parse((await runCli(["inspect", "--json", path.join(work, "ccel_data.dat")])).stdout.toString());
    const quote = JSON.parse(
      (await runCli(["inspect", "--json", path.join(FIX, "tdx/cos-113-tdx-quote.dat")])).stdout.toString(),
    );
    for (let i = 0; i < 4; i++) expect(log.replay[`RTMR${i}`].sha384).toBe(quote.claims.quote.body[`rtmr_${i}`]);
  });

  it("truncated copies fail with exit 5 naming structure, field and offset; stdout stays empty", async () => {
    const truncations: Array<[string, number, RegExp]> = [
      ["tdx/tdx_quote_5.dat", 700, /TDX quote: field 'body\.mr_service_td' at offset 654 \(0x28e\)/],
      ["tdx/tdx_quote_4.dat", 2000, /TDX quote: field 'signature_data_len' at offset 632 .*truncated/],
      ["eventlog/CCEL_unpadded.data.bin", 1000, /CCEL: field '[\w.[\]]+' at offset \d+/],
      ["azure/kinvolk/hcl-report-tdx.bin", 1300, /HCL report: field '[\w.]+' at offset \d+/],
    ];
    for (const [file, n, re] of truncations) {
      const p = path.join(work, `trunc-${path.basename(file)}`);
      fs.writeFileSync(p, fs.readFileSync(path.join(FIX, file)).subarray(0, n));
      const r = await runCli([
        "inspect",
        "--type",
        file.includes("CCEL") ? "ccel" : file.includes("hcl") ? "hcl-report" : "tdx-quote",
        p,
      ]);
      expect(r.code, r.stderr).toBe(EXIT_CODES.evidence);
      expect(r.stderr).toMatch(re);
      expect(r.stdout.length).toBe(0);
    }
  });

  it("trustee tdx evidence JSON: RTMR replay checked; hex text input is decoded", async () => {
    const ev = path.join(work, "tdx-evidence.json");
    fs.writeFileSync(
      ev,
      JSON.stringify({
        cc_eventlog: fs.readFileSync(path.join(work, "ccel_data.dat")).toString("base64"),
        quote: fs.readFileSync(path.join(FIX, "tdx/cos-113-tdx-quote.dat")).toString("base64"),
      }),
    );
    const r = await runCli(["inspect", "--json", ev]);
    expect(r.code, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout.toString()).cc_eventlog.rtmr_match).toEqual({
      RTMR0: true,
      RTMR1: true,
      RTMR2: true,
      RTMR3: true,
    });
    const hexFile = path.join(work, "report.hex");
    fs.writeFileSync(hexFile, fs.readFileSync(path.join(FIX, "snp/teekit-sev-gcp.bin")).toString("hex"));
    const h = await runCli(["inspect", hexFile]);
    expect(h.code, h.stderr).toBe(0);
    expect(h.stdout.toString()).toMatch(/SEV-SNP attestation report v5/);
  });

  it("--trustee prints the SNP evidence struct; usage errors exit 2", async () => {
    const r = await runCli(["inspect", "--trustee", path.join(FIX, "snp/trustee-test-report.bin")]);
    expect(r.code, r.stderr).toBe(0);
    const want = JSON.parse(fs.readFileSync(path.join(FIX, "snp/generated-snp-test-report.evidence.json"), "utf8"));
    expect(JSON.parse(r.stdout.toString())).toEqual(want);
    expect((await runCli(["inspect"])).code).toBe(EXIT_CODES.usage);
    expect((await runCli(["inspect", "--type", "gif", path.join(FIX, "tdx/tdx_quote_4.dat")])).code).toBe(
      EXIT_CODES.usage,
    );
    const unknown = path.join(work, "zeros.bin");
    fs.writeFileSync(unknown, Buffer.alloc(100));
    const u = await runCli(["inspect", unknown]);
    expect(u.code).toBe(EXIT_CODES.evidence);
    expect(u.stderr).toMatch(/--type/);
  });
});
