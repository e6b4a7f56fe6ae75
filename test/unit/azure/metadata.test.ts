// The IMDS client against a fake metadata service: happy paths, and bounded failure on garbage,
// oversized, slow and failing responses.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { fetchTdQuote, fetchVcek, type MetadataOptions } from "../../../platform/azure/metadata.ts";
import { certificatesFromPem, pemCertificateBlocks, toPem as pemOf } from "../../../platform/util/pem.ts";
import { Deadline } from "../../../platform/util/deadline.ts";
import { CvmError, ParseError } from "../../../platform/util/errors.ts";
import { silentLogger } from "../../../platform/util/log.ts";
import { startFakeMetadata, type FakeMetadata } from "../../helpers/azure-metadata.ts";
import { fixtureText } from "./fixtures.ts";

const pem = fixtureText("trustee-az-snp-vtpm/vcek.pem");
const blocks = pemCertificateBlocks(pem).map((b) => `${b}\n`);
let md: FakeMetadata;
const opts = (o: Partial<MetadataOptions> = {}): MetadataOptions => ({
  baseUrl: md.url,
  deadline: new Deadline(20_000),
  log: silentLogger,
  ...o,
});

beforeAll(async () => {
  md = await startFakeMetadata({
    vcekPem: blocks[0],
    chainPem: blocks[1]! + blocks[2]!,
    tdQuote: (r) => new Uint8Array([...r.subarray(0, 4), 0xee]),
  });
});
afterAll(() => md.close());

describe("Azure metadata client", () => {
  it("GETs the VCEK with Metadata: true and converts PEM to DER", async () => {
    md.setFault("none");
    const { vcek, chain } = await fetchVcek(opts());
    expect(vcek[0]).toBe(0x30);
    expect(Buffer.from(vcek).toString("base64")).toBe(blocks[0]!.replace(/-----[A-Z ]+-----|\s/g, ""));
    expect(chain.length).toBe(2);
    const last = md.requests.at(-1)!;
    expect(last).toMatchObject({ method: "GET", path: "/metadata/THIM/amd/certification", metadataHeader: "true" });
  });

  it("POSTs the TD report as base64url and decodes the quote", async () => {
    md.setFault("none");
    const report = new Uint8Array(1024).map((_, i) => i & 0xff);
    const q = await fetchTdQuote(opts(), report);
    expect([...q]).toEqual([0, 1, 2, 3, 0xee]);
    const last = md.requests.at(-1)!;
    expect(last.method).toBe("POST");
    expect(JSON.parse(last.body)).toEqual({ report: Buffer.from(report).toString("base64url") });
  });

  it("retries a 500 once and succeeds", async () => {
    md.setFault("flaky-500");
    const n = md.requests.length;
    await fetchVcek(opts());
    expect(md.requests.length - n).toBe(2);
  });

  it("gives up on persistent 500s after the bounded attempts", async () => {
    md.setFault("status-500");
    const n = md.requests.length;
    await expect(fetchVcek(opts({ attempts: 3 }))).rejects.toThrow(/HTTP 500/);
    expect(md.requests.length - n).toBe(3);
  });

  it.each([
    ["garbage", /not JSON/],
    ["wrong-shape", /vcekCert.*missing/],
    ["oversized", /exceeds the 262144-byte limit|more than 262144 bytes/],
  ] as const)("rejects %s responses with a ParseError", async (fault, msg) => {
    md.setFault(fault);
    const err = await fetchVcek(opts()).catch((e) => e);
    expect(err).toBeInstanceOf(ParseError);
    expect((err as Error).message).toMatch(msg);
  });

  it.each([
    ["quote-not-base64", /tdquote response: field 'quote' at offset 4 \(0x4\): not unpadded base64url/],
    ["quote-only-padding", /tdquote response: field 'quote' .*only padding/],
  ] as const)("rejects a %s TD quote with a ParseError naming the field", async (fault, msg) => {
    md.setFault(fault);
    const err = await fetchTdQuote(opts(), new Uint8Array(1024)).catch((e) => e);
    expect(err).toBeInstanceOf(ParseError);
    expect((err as ParseError).field).toBe("quote");
    expect((err as Error).message).toMatch(msg);
  });

  it("bounds a service that never answers by the per-request timeout", async () => {
    md.setFault("slow");
    const t0 = Date.now();
    const err = await fetchVcek(opts({ timeoutMs: 300, attempts: 2 })).catch((e) => e);
    const took = Date.now() - t0;
    expect(err).toBeInstanceOf(CvmError);
    expect((err as Error).message).toMatch(/no complete answer within 300 ms/);
    expect(took).toBeGreaterThanOrEqual(600);
    expect(took).toBeLessThan(3000);
  });

  it("bounds a slow service by the run deadline", async () => {
    md.setFault("slow");
    const t0 = Date.now();
    const err = await fetchTdQuote(opts({ deadline: new Deadline(500) }), new Uint8Array(1024)).catch((e) => e);
    expect(Date.now() - t0).toBeLessThan(2500);
    expect((err as CvmError).kind === "deadline" || /within/.test((err as Error).message)).toBe(true);
  });

  it("refuses non-http metadata URLs", async () => {
    await expect(fetchVcek(opts({ baseUrl: "https://169.254.169.254" }))).rejects.toThrow(/must be http/);
  });
});

describe("THIM PEM → DER", () => {
  const one = blocks[0]!;
  const der = (pem: string) => Buffer.from(pem.replace(/-----[A-Z ]+-----|\s/g, ""), "base64");
  const toPem = (d: Uint8Array) => pemOf("CERTIFICATE", d);
  it.each([
    ["no certificate", "hello", /no -----BEGIN CERTIFICATE/],
    ["a private key block", "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n", /expected CERTIFICATE/],
    ["a body that is not base64", "-----BEGIN CERTIFICATE-----\n#!@$\n-----END CERTIFICATE-----\n", /not base64/],
    [
      "DER shorter than its SEQUENCE length",
      toPem(der(one).subarray(0, 900)),
      /DER SEQUENCE of \d+ bytes in a 900-byte block/,
    ],
    ["DER with trailing bytes", toPem(Buffer.concat([der(one), Buffer.from([0, 0, 0])])), /in a \d+-byte block/],
    ["DER that is not a SEQUENCE", "-----BEGIN CERTIFICATE-----\nAgEA\n-----END CERTIFICATE-----\n", /SEQUENCE/],
  ])("rejects %s", (_n, pem, msg) => {
    expect(() => certificatesFromPem(pem, "THIM vcekCert")).toThrow(msg);
  });
  it("takes several certificates in order", () => {
    expect(certificatesFromPem(blocks.join(""), "chain").map((d) => d.length)).toEqual(
      blocks.map((b) => Buffer.from(b.replace(/-----[A-Z ]+-----|\s/g, ""), "base64").length),
    );
  });
});
