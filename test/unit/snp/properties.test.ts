// Property-style tests: random, truncated and bit-flipped host input must only ever produce
// ParseError/CvmError from the SNP and configfs-tsm codecs — never a RangeError/TypeError, never a hang.
import * as fs from "node:fs";
import * as path from "node:path";
import { describe, expect, it } from "vitest";
import { encodeCertTable, CERT_GUIDS, parseCertTable } from "../../../platform/snp/certs.ts";
import {
  parseSnpEvidenceJson,
  snpEvidenceJsonText,
  snpReportFromJson,
  snpReportToJsonText,
} from "../../../platform/snp/json.ts";
import { decodeSnpReport, encodeSnpReport } from "../../../platform/snp/report.ts";
import { decodeReportResp } from "../../../platform/snp/sev-guest.ts";
import { parseGeneration, parsePrivlevel, parseProvider } from "../../../platform/tsm/attributes.ts";
import { CvmError } from "../../../platform/util/errors.ts";
import { prng, type Prng } from "../../helpers/prng.ts";

const FIX = path.resolve(__dirname, "../../fixtures/snp");
const seeds = [1, 2, 3, 0xc0ffee, 0x5eed];
const REPORTS = [
  "trustee-test-report.bin",
  "trustee-test-vlek-report.bin",
  "teekit-sev-gcp.bin",
  "gosev-attestation.bin",
].map((f) => new Uint8Array(fs.readFileSync(path.join(FIX, f))));

function onlyTypedErrors(f: () => unknown, what: string): "ok" | "rejected" {
  try {
    f();
    return "ok";
  } catch (e) {
    if (e instanceof CvmError) return "rejected";
    throw new Error(`${what}: threw ${(e as Error)?.constructor?.name}: ${(e as Error)?.message}`);
  }
}

function mutate(r: Prng, base: Uint8Array): Uint8Array {
  const b = base.slice();
  switch (r.int(0, 3)) {
    case 0: // flip bits
      for (let i = r.int(1, 8); i > 0; i--) b[r.int(0, b.length - 1)]! ^= 1 << r.int(0, 7);
      return b;
    case 1: // truncate
      return b.subarray(0, r.int(0, b.length - 1));
    case 2: // extend
      return new Uint8Array([...b, ...r.bytes(r.int(1, 64))]);
    default: // random
      return r.bytes(r.int(0, 2048));
  }
}

describe("properties", () => {
  for (const seed of seeds) {
    it(`decodeSnpReport(seed ${seed}): mutated reports decode exactly or throw ParseError; decoded ones round-trip`, () => {
      const r = prng(seed);
      let ok = 0;
      for (let i = 0; i < 200; i++) {
        const raw = mutate(r, r.pick(REPORTS));
        if (onlyTypedErrors(() => decodeSnpReport(raw), `seed ${seed} case ${i}`) === "ok") {
          ok++;
          const rep = decodeSnpReport(raw);
          // bytes the decoder accepted always come back identical, in the signed range at least
          expect(Buffer.from(encodeSnpReport(rep).subarray(0, 0x330))).toEqual(Buffer.from(raw.subarray(0, 0x330)));
          // through JSON: exact, or (u64 beyond 2^53 after a plain JSON.parse) refused — never rounded
          const text = snpReportToJsonText(rep);
          if (onlyTypedErrors(() => snpReportFromJson(JSON.parse(text)), "json") === "ok")
            expect(Buffer.from(encodeSnpReport(snpReportFromJson(JSON.parse(text))))).toEqual(
              Buffer.from(encodeSnpReport(rep)),
            );
          else expect(() => snpReportFromJson(JSON.parse(text))).toThrow(/exceeds 2\^53/);
        }
      }
      expect(ok).toBeGreaterThan(0);
    });

    it(`parseCertTable(seed ${seed}): hostile tables only throw ParseError; every entry lies inside the buffer`, () => {
      const r = prng(seed);
      const base = encodeCertTable([
        { guid: CERT_GUIDS.VCEK, data: r.bytes(300) },
        { guid: CERT_GUIDS.ASK, data: r.bytes(200) },
        { guid: CERT_GUIDS.ARK, data: r.bytes(200) },
      ]);
      let ok = 0;
      for (let i = 0; i < 400; i++) {
        const t = mutate(r, base);
        if (onlyTypedErrors(() => parseCertTable(t), `seed ${seed} case ${i}`) === "ok") {
          ok++;
          for (const e of parseCertTable(t)) expect(e.offset + e.length).toBeLessThanOrEqual(t.length);
        }
      }
      expect(ok).toBeGreaterThan(0); // mutations reach past the entry table
    });

    it(`evidence JSON (seed ${seed}): mangled structures only throw ParseError`, () => {
      const r = prng(seed);
      const good = JSON.parse(
        snpEvidenceJsonText(decodeSnpReport(r.pick(REPORTS)), [{ cert_type: "VCEK", data: r.bytes(16) }]),
      );
      const junk = () =>
        r.pick<unknown>([null, -1, 1.5, 2 ** 60, "x", [], {}, [256], true, r.int(0, 300), { OTHER: "nope" }]);
      for (let i = 0; i < 300; i++) {
        const ev = JSON.parse(JSON.stringify(good));
        const rep = ev.attestation_report;
        const keys = Object.keys(rep);
        const k = r.pick(keys);
        const mode = r.int(0, 3);
        if (mode === 0) delete rep[k];
        else if (mode === 1) rep[k] = junk();
        else if (mode === 2 && Array.isArray(rep[k])) rep[k][r.int(0, rep[k].length - 1)] = junk();
        else
          ev.cert_chain = r.pick([junk(), [{ cert_type: junk(), data: [1] }], [{ cert_type: "VCEK", data: junk() }]]);
        onlyTypedErrors(() => {
          const p = parseSnpEvidenceJson(ev);
          encodeSnpReport(p.report);
        }, `seed ${seed} case ${i} key ${k}`);
      }
    });

    it(`configfs text attributes and MSG_REPORT_RSP (seed ${seed}) only throw typed errors`, () => {
      const r = prng(seed);
      let respOk = 0;
      for (let i = 0; i < 300; i++) {
        const text = r.bool()
          ? r.bytes(r.int(0, 40))
          : new TextEncoder().encode(
              r.pick(["0\n", "17\n", "sev_guest\n", "", "\n", "1e3\n", "-1\n", "99999999999999999999\n"]),
            );
        onlyTypedErrors(() => parseGeneration(text), "generation");
        onlyTypedErrors(() => parseProvider(text), "provider");
        onlyTypedErrors(() => parsePrivlevel(text), "privlevel");
        onlyTypedErrors(() => decodeReportResp(r.bytes(r.int(0, 1300))), "MSG_REPORT_RSP");
        // from a well-formed response too, so mutations get past the status word
        const good = new Uint8Array(0x20 + 0x4a0);
        new DataView(good.buffer).setUint32(4, 0x4a0, true);
        good.set(r.pick(REPORTS), 0x20);
        if (onlyTypedErrors(() => decodeReportResp(mutate(r, good)), "MSG_REPORT_RSP") === "ok") respOk++;
      }
      expect(respOk).toBeGreaterThan(0);
    });
  }
});
