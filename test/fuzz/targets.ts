// Every parser of host- or network-controlled bytes, as a fuzz target: its seeds (the fixtures the
// unit tests use, test/fixtures/*), how to mutate them (bytes, text with a dictionary, JSON tree),
// the checksum fix-up of the format, and what the product does with the bytes after parsing (so a
// mutation that parses also runs through the code that consumes the result).
//
// The contract being fuzzed (docs/ARCHITECTURE.md): a parser returns a value or throws CvmError
// (ParseError for host bytes); parsers documented as "undefined when garbled" never throw at all.
// Anything else (TypeError, RangeError, a failed invariant) is a crash.
import * as fs from "node:fs";
import * as path from "node:path";
import { gunzipSync } from "node:zlib";
import { parseCvmParams } from "../../agent/config/layers/cmdline.ts";
import { parseCvmToken, TOKEN_TYPE } from "../../agent/config/layers/token.ts";
import { decodeEvidenceRecord } from "../../agent/evidence-record.ts";
import { parseChallenge, parseToken, sessionCookie } from "../../agent/kbs/client.ts";
import { decideOnKbsError, parseErrorInformation, type KbsPhase } from "../../agent/kbs/error-info.ts";
import { decryptResourceJwe } from "../../agent/kbs/jwe.ts";
import { runtimeDigest, selectHashAlgorithm } from "../../agent/kbs/runtime-data.ts";
import type { EcTeePubKey, RsaTeePubKey, TeeKeyPair } from "../../agent/kbs/tee-key.ts";
import { parseRetryAfter } from "../../agent/kbs/transport.ts";
import { decodeRecords } from "../../agent/measure/events.ts";
import { checkPins, parseKeyResource } from "../../agent/unlock/key-document.ts";
import { decodeOpenedState } from "../../agent/unlock/opened-state.ts";
import { encodeOpensshPrivateKey, parseOpensshPrivateKey } from "../../agent/identity/openssh-key.ts";
import { parseHostCertificate } from "../../agent/identity/ssh-certificate.ts";
import { parseMountinfo } from "../../agent/unlock/verify-root.ts";
import { parseDetachedSignature } from "../../agent/verity/pkcs7.ts";
import { HASH_HEX_CHARS, parseVerityResource } from "../../agent/verity/resource.ts";
import { checkRootHashSignature, signerCertificates } from "../../agent/verity/signature.ts";
import { parseVeritySuperblock, rootBlockLocation } from "../../agent/verity/superblock.ts";
import { parseDmVerityTable, tableCarriesHash } from "../../agent/verity/table.ts";
import { parseHclReport, reportDataBindsClaims } from "../../platform/azure/hcl.ts";
import { parseCcelLog, parseCcelTable } from "../../platform/eventlog/ccel.ts";
import { describeEvent } from "../../platform/eventlog/details.ts";
import { parseEventLog } from "../../platform/eventlog/parse.ts";
import { replay } from "../../platform/eventlog/replay.ts";
import { parseGptEntries, parseGptHeader } from "../../platform/luks/gpt.ts";
import { parseLuks2Header, type Luks2Header } from "../../platform/luks/luks2-header.ts";
import { CERT_GUIDS, encodeCertTable, parseCertTable } from "../../platform/snp/certs.ts";
import { parseSnpEvidenceJson } from "../../platform/snp/json.ts";
import { decodeSnpReport, guestPolicy, keyInfo, platformInfo } from "../../platform/snp/report.ts";
import { decodeReportResp } from "../../platform/snp/sev-guest.ts";
import { snpSignatureCompact, vekPublicKey } from "../../platform/snp/verify.ts";
import { trusteeEventClaims, trusteeQuoteClaims } from "../../platform/tdx/claims.ts";
import { decodeTdAttributes, parseTdxQuote } from "../../platform/tdx/quote.ts";
import { pckChainPem, verifyQeBinding } from "../../platform/tdx/signature.ts";
import { parseTdReport } from "../../platform/tdx/tdreport.ts";
import { decodeGetCapability } from "../../platform/tpm/commands/capability.ts";
import { decodeNvRead, decodeNvReadPublic, decodeNoParams } from "../../platform/tpm/commands/nv.ts";
import { decodeCreatePrimary, decodeReadPublic } from "../../platform/tpm/commands/object.ts";
import { decodePcrRead } from "../../platform/tpm/commands/pcr.ts";
import { decodeQuote } from "../../platform/tpm/commands/quote.ts";
import { summariseCertificate } from "../../platform/tpm/ekcert.ts";
import { parseResponseHeader } from "../../platform/tpm/marshal.ts";
import { decodePublic, decodeQuoteAttest, decodeSignature } from "../../platform/tpm/structures.ts";
import { parseGeneration, parsePrivlevel, parseProvider } from "../../platform/tsm/attributes.ts";
import { bytesEqual, fromHex } from "../../platform/util/bytes.ts";
import { decodeCborUntrusted } from "../../platform/util/cbor.ts";
import { CvmError } from "../../platform/util/errors.ts";
import { certificatesFromPem, derSequenceSize } from "../../platform/util/pem.ts";
import type { Prng } from "../helpers/prng.ts";
import { fixAcpiChecksum, fixGptCrcs, fixLuks2Checksum, fixTpmResponseSize, GPT_SECTOR } from "./fixups.ts";
import { mutateBytes, mutateJson } from "./mutate.ts";

export interface FuzzTarget {
  name: string;
  /** Where the bytes come from in the product, and which parser reads them. */
  about: string;
  /** Seed inputs (loaded once, lazily: some need a key import or a decompression). */
  seeds: () => Promise<Uint8Array[]>;
  /** Default: byte havoc (with `dictionary` tokens when given). */
  mutate?: (r: Prng, seed: Uint8Array, other: Uint8Array) => Uint8Array;
  dictionary?: readonly string[];
  /** Recompute the format's checksums / size fields (applied to most, not all, mutated inputs). */
  fix?: (b: Uint8Array) => Uint8Array;
  /** Parse and consume the bytes the way the product does; REFUSED when the parser said no without throwing. */
  run: (input: Uint8Array) => unknown;
  /** Is this exception the parser's documented failure? Default: any CvmError (ParseError included). */
  expected?: (e: unknown) => boolean;
}

/** A broken invariant on a parser's *result*: always reported as a crash. */
export class InvariantError extends Error {
  override name = "InvariantError";
}

function invariant(ok: boolean, what: string): void {
  if (!ok) throw new InvariantError(what);
}

/** Run one consumer of a parsed value; its documented refusal (CvmError) does not stop the next one. */
function refusalAllowed(fn: () => unknown): boolean {
  try {
    fn();
    return true;
  } catch (e) {
    if (!(e instanceof CvmError)) throw e;
    return false;
  }
}

const ROOT = path.resolve(path.dirname(new URL(import.meta.url).pathname), "../fixtures");
const fixture = (rel: string) => new Uint8Array(fs.readFileSync(path.join(ROOT, rel)));
const fixtures =
  (...rels: string[]) =>
  async () =>
    rels.map(fixture);
const text = (b: Uint8Array) => new TextDecoder().decode(b);
const bytes = (s: string) => new TextEncoder().encode(s);
const never = () => false;
const json = (r: Prng, seed: Uint8Array, other: Uint8Array) => mutateJson(r, seed, other);

/** Returned by a parser that refuses by returning (undefined, an error field) instead of throwing. */
export const REFUSED = Symbol("refused");

/** Body → JSON value the way the product reads it: non-JSON is refused before the parser runs. */
function jsonBody(b: Uint8Array): unknown {
  try {
    return JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(b));
  } catch {
    throw new CvmError("kbs-protocol", "body is not UTF-8 JSON");
  }
}

// ---- SSH identity seeds ----------------------------------------------------------------------------

/** The openssh-key-v1 binary inside a fixture's PEM armour. */
function opensshBinary(rel: string): Uint8Array {
  const lines = text(fixture(rel)).trim().split("\n");
  return new Uint8Array(Buffer.from(lines.slice(1, -1).join(""), "base64"));
}
function armorOpenssh(b: Uint8Array): Uint8Array {
  const b64 = Buffer.from(b)
    .toString("base64")
    .replace(/(.{70})/g, "$1\n")
    .replace(/\n$/, "");
  return bytes(`-----BEGIN OPENSSH PRIVATE KEY-----\n${b64}\n-----END OPENSSH PRIVATE KEY-----\n`);
}
function certBlob(rel: string): Uint8Array {
  return new Uint8Array(Buffer.from(text(fixture(rel)).split(" ")[1]!, "base64"));
}
/** The key a certificate blob names (so the key check passes and the rest of the parser runs), or zeros. */
function certKey(blob: Uint8Array): Uint8Array {
  // type (4 + 32) and nonce (4 + 32) precede the key's length (4): true for the fixtures' layout.
  const at = 4 + 32 + 4 + 32 + 4;
  return blob.length >= at + 32 ? blob.subarray(at, at + 32) : new Uint8Array(32);
}
/** The fixture certificate checked against a parsed key (exercises the key comparison with fuzzed keys). */
function parseHostCertificateFor(key: Uint8Array): Uint8Array | undefined {
  return refusalAllowed(() => parseHostCertificate(fixture("ssh/host_ed25519-cert.pub"), key)) ? key : undefined;
}

// ---- seeds built from fixtures ----------------------------------------------------------------------

interface TranscriptEntry {
  name: string;
  rsp: string;
}
let transcript: TranscriptEntry[] | undefined;
/** Successful libtpms responses whose command name starts with one of `prefixes`. */
function tpmResponses(...prefixes: string[]): () => Promise<Uint8Array[]> {
  return async () => {
    transcript ??= JSON.parse(text(fixture("tpm/transcript_raw.json"))) as TranscriptEntry[];
    const seeds = transcript
      .filter((e) => prefixes.some((p) => e.name.startsWith(p)))
      .map((e) => fromHex(e.rsp))
      .filter((b) => b.length > 10);
    if (!seeds.length) throw new Error(`no transcript response for ${prefixes.join(", ")}`);
    return seeds;
  };
}

function tpmStructure(field: string): () => Promise<Uint8Array[]> {
  return async () =>
    ["tpm/quote_rsa_ak.json", "tpm/quote_ecc_ak.json"].map((f) => fromHex(JSON.parse(text(fixture(f)))[field]));
}

function pemToDer(pem: Uint8Array): Uint8Array[] {
  return certificatesFromPem(text(pem), "fixture");
}

const LUKS_HDR = 16384;
let luksHeader: Luks2Header | undefined;
/** The fixture's primary header, parsed once: what key-document pins are checked against. */
function fixtureLuksHeader(): Luks2Header {
  return (luksHeader ??= parseLuks2Header(fixture("unlock/luks2-header.bin").slice(0, LUKS_HDR)));
}

/** LUKS2 header with its JSON area edited as a JSON tree, then resealed (reaches the metadata checks). */
function mutateLuks2Json(r: Prng, seed: Uint8Array, other: Uint8Array): Uint8Array {
  const area = seed.subarray(4096);
  const nul = area.indexOf(0);
  const edited = mutateJson(r, area.subarray(0, nul < 0 ? area.length : nul), other.subarray(4096));
  const out = seed.slice();
  out.fill(0, 4096);
  out.set(edited.subarray(0, out.length - 4096 - 1), 4096);
  return out;
}

const HCL_VAR_SIZE_AT = 0x4d0;
const HCL_VAR_DATA_AT = 0x4d4;

/**
 * HCL report with its runtime claims (the JSON in variable_data) edited as a JSON tree, and the three
 * size fields that frame it (report_size, hcl_data.data_size, variable_data_size) rewritten to match.
 */
function mutateHclClaims(r: Prng, seed: Uint8Array, other: Uint8Array): Uint8Array {
  if (seed.length < HCL_VAR_DATA_AT) return mutateBytes(r, seed, other);
  const v = new DataView(seed.buffer, seed.byteOffset, seed.byteLength);
  const claims = seed.subarray(HCL_VAR_DATA_AT, HCL_VAR_DATA_AT + v.getUint32(HCL_VAR_SIZE_AT, true));
  const edited = mutateJson(r, claims, claims);
  const out = new Uint8Array(Math.max(seed.length, HCL_VAR_DATA_AT + edited.length));
  out.set(seed.subarray(0, HCL_VAR_DATA_AT));
  out.set(edited, HCL_VAR_DATA_AT);
  const w = new DataView(out.buffer);
  w.setUint32(8, HCL_VAR_DATA_AT + edited.length, true); // report_size
  w.setUint32(0x4c0, 20 + edited.length, true); // hcl_data.data_size: fixed part + claims
  w.setUint32(HCL_VAR_SIZE_AT, edited.length, true);
  return out;
}

/** Flattened JWE with the base64url protected header edited as JSON half of the time. */
function mutateJwe(r: Prng, seed: Uint8Array, other: Uint8Array): Uint8Array {
  let jwe: Record<string, unknown>;
  try {
    jwe = JSON.parse(text(seed));
  } catch {
    return mutateJson(r, seed, other);
  }
  if (r.bool() || typeof jwe?.protected !== "string") return mutateJson(r, seed, other);
  const header = Buffer.from(jwe.protected as string, "base64url");
  jwe.protected = Buffer.from(mutateJson(r, header, header)).toString("base64url");
  return bytes(JSON.stringify(jwe));
}

const jweVectors = () => JSON.parse(text(fixture("kbs/jwe-vectors.json")));
const keys = new Map<string, TeeKeyPair>();

async function ecKey(): Promise<TeeKeyPair> {
  const v = jweVectors()["ecdh-es-a256kw-p-256"];
  const { crv, x, y, d } = v.tee_private_jwk;
  const privateKey = await crypto.subtle.importKey(
    "jwk",
    { kty: "EC", crv, x, y, d },
    { name: "ECDH", namedCurve: crv },
    false,
    ["deriveBits"],
  );
  return { type: "ec-p256", publicJwk: v.tee_pubkey as EcTeePubKey, privateKey };
}

async function rsaKey(): Promise<TeeKeyPair> {
  const v = jweVectors()["rsa-oaep-256"];
  const der = Buffer.from(String(v.tee_private_key_pkcs8_pem).replace(/-----[^-]+-----|\s/g, ""), "base64");
  const privateKey = await crypto.subtle.importKey("pkcs8", der, { name: "RSA-OAEP", hash: "SHA-256" }, false, [
    "unwrapKey",
  ]);
  return { type: "rsa-oaep-256", publicJwk: { ...v.tee_pubkey, alg: "RSA-OAEP-256" } as RsaTeePubKey, privateKey };
}

function jweTarget(name: string, vector: string, loadKey: () => Promise<TeeKeyPair>): FuzzTarget {
  return {
    name,
    about: `KBS resource response (flattened JWE, ${vector}): agent/kbs/jwe.ts decryptResourceJwe`,
    seeds: async () => {
      keys.set(name, await loadKey());
      return [bytes(jweVectors()[vector].response_json)];
    },
    mutate: mutateJwe,
    run: async (b) => (await decryptResourceJwe(jsonBody(b), keys.get(name)!)).fill(0),
  };
}

const KBS_PHASES: KbsPhase[] = ["auth", "attest", "resource"];
const COOKIE_VALUE = /^kbs-session-id=[\x21\x23-\x2b\x2d-\x3a\x3c-\x5b\x5d-\x7e]{1,256}$/;

// ---- the targets --------------------------------------------------------------------------------------

const tpm = (name: string, about: string, seeds: () => Promise<Uint8Array[]>, run: (b: Uint8Array) => unknown) => ({
  name,
  about: `TPM response (/dev/tpmrm0 or swtpm): ${about}`,
  seeds,
  fix: fixTpmResponseSize,
  run,
});

export const TARGETS: FuzzTarget[] = [
  tpm(
    "tpm-get-capability",
    "platform/tpm/commands/capability.ts decodeGetCapability",
    tpmResponses("GetCapability"),
    // The capability the caller asked for is taken from the response, so every capability decoder is reached.
    (b) => decodeGetCapability(b, b.length >= 15 ? new DataView(b.buffer, b.byteOffset).getUint32(11) : 6),
  ),
  tpm("tpm-pcr-read", "platform/tpm/commands/pcr.ts decodePcrRead", tpmResponses("PCR_Read"), decodePcrRead),
  tpm(
    "tpm-create-primary",
    "platform/tpm/commands/object.ts decodeCreatePrimary",
    tpmResponses("CreatePrimary"),
    decodeCreatePrimary,
  ),
  tpm(
    "tpm-read-public",
    "platform/tpm/commands/object.ts decodeReadPublic",
    tpmResponses("ReadPublic"),
    decodeReadPublic,
  ),
  tpm("tpm-quote", "platform/tpm/commands/quote.ts decodeQuote", tpmResponses("Quote"), decodeQuote),
  tpm(
    "tpm-nv-read-public",
    "platform/tpm/commands/nv.ts decodeNvReadPublic",
    tpmResponses("NV_ReadPublic"),
    decodeNvReadPublic,
  ),
  tpm("tpm-nv-read", "platform/tpm/commands/nv.ts decodeNvRead", tpmResponses("NV_Read("), (b) =>
    decodeNvRead(b, 1016),
  ),
  tpm(
    "tpm-response-header",
    "platform/tpm/marshal.ts parseResponseHeader, commands without parameters",
    tpmResponses("FlushContext", "PCR_Extend", "TPM2_Startup", "NV_Read size"),
    (b) => {
      parseResponseHeader(b);
      decodeNoParams("FlushContext", b);
    },
  ),
  {
    name: "tpm-public",
    about: "TPMT_PUBLIC (AK/EK public area from the TPM): platform/tpm/structures.ts decodePublic",
    seeds: tpmStructure("ak_public_TPMT_PUBLIC"),
    run: decodePublic,
  },
  {
    name: "tpm-signature",
    about: "TPMT_SIGNATURE (quote signature): platform/tpm/structures.ts decodeSignature",
    seeds: tpmStructure("signature_TPMT_SIGNATURE"),
    run: decodeSignature,
  },
  {
    name: "tpm-attest",
    about: "TPMS_ATTEST (quoted data): platform/tpm/structures.ts decodeQuoteAttest",
    seeds: tpmStructure("attest_TPMS_ATTEST"),
    run: decodeQuoteAttest,
  },
  {
    name: "ek-certificate",
    about: "EK certificate NV index content: platform/tpm/ekcert.ts summariseCertificate (never throws)",
    seeds: fixtures("tpm/ekcert_rsa_0x01c00002.der"),
    run: (b) => (summariseCertificate(0x01c00002, "RSA EK", b).error !== undefined ? REFUSED : undefined),
    expected: never,
  },
  {
    name: "eventlog",
    about:
      "TCG event log (securityfs binary_bios_measurements): platform/eventlog parseEventLog, replay, describeEvent",
    seeds: fixtures(
      "eventlog/specid-vendordata.bin",
      "eventlog/event-uefi-sha1-log.bin",
      "eventlog/crypto_agile_eventlog",
      "eventlog/arch-linux-workstation.bin",
      "eventlog/cos-85-amd-sev.bin",
    ),
    run: (b) => {
      const log = parseEventLog(b);
      for (const e of log.events) describeEvent(e);
      return replay(log, { kind: "pcr" });
    },
  },
  {
    name: "ccel-log",
    about: "CCEL log area (ACPI data table, host memory): platform/eventlog parseCcelLog, RTMR replay, trustee claims",
    seeds: async () => [
      fixture("eventlog/CCEL_unpadded.data.bin"),
      fixture("eventlog/CCEL_AAEL_alibabacloud"),
      gunzipSync(fixture("tdx/ccel_data.dat.gz")).subarray(0, 16384),
    ],
    run: (b) => {
      const log = parseCcelLog(b);
      trusteeEventClaims(log);
      return replay(log, { kind: "rtmr" });
    },
  },
  {
    name: "ccel-table",
    about: "CCEL ACPI table (sysfs): platform/eventlog/ccel.ts parseCcelTable",
    seeds: fixtures("tdx/ccel_table.dat", "eventlog/CCEL.bin"),
    fix: fixAcpiChecksum,
    run: parseCcelTable,
  },
  {
    name: "snp-report",
    about: "SEV-SNP attestation report (configfs-tsm outblob / ioctl): platform/snp/report.ts decodeSnpReport",
    seeds: fixtures(
      "snp/trustee-test-report.bin",
      "snp/trustee-test-vlek-report.bin",
      "snp/gosev-attestation.bin",
      "snp/teekit-sev-gcp.bin",
    ),
    run: (b) => {
      const report = decodeSnpReport(b);
      snpSignatureCompact(b);
      guestPolicy(report.policy);
      keyInfo(report.key_info);
      platformInfo(report.plat_info);
      return report;
    },
  },
  {
    name: "snp-report-resp",
    about: "SNP MSG_REPORT_RSP from /dev/sev-guest: platform/snp/sev-guest.ts decodeReportResp",
    seeds: async () => {
      const resp = new Uint8Array(4000);
      new DataView(resp.buffer).setUint32(4, 0x4a0, true);
      resp.set(fixture("snp/trustee-test-report.bin"), 0x20);
      return [resp];
    },
    run: decodeReportResp,
  },
  {
    name: "snp-cert-table",
    about: "SNP extended-report certificate table (auxblob / ioctl): platform/snp/certs.ts parseCertTable",
    seeds: async () => {
      const [ark, ask] = pemToDer(fixture("snp/milan-ask-ark.pem")).reverse();
      const vcek = fixture("snp/trustee-test-vcek.der");
      return [
        encodeCertTable([
          { guid: CERT_GUIDS.VCEK, data: vcek },
          { guid: CERT_GUIDS.ASK, data: ask! },
          { guid: CERT_GUIDS.ARK, data: ark! },
        ]),
        encodeCertTable([{ guid: CERT_GUIDS.VLEK, data: fixture("snp/trustee-test-vlek.der") }], 0x4000),
      ];
    },
    run: (b) => {
      const entries = parseCertTable(b);
      for (const e of entries)
        invariant(e.data.length === e.length && e.offset + e.length <= b.length, "certificate outside the table");
      return entries;
    },
  },
  {
    name: "snp-evidence-json",
    about: "trustee's SNP evidence JSON (evidence files, inspect): platform/snp/json.ts parseSnpEvidenceJson",
    seeds: fixtures(
      "snp/generated-snp-test-report.evidence.json",
      "snp/generated-snp-test-vlek-report.evidence.json",
      "snp/trustee-e2e-evidence.json",
    ),
    mutate: json,
    run: (b) => parseSnpEvidenceJson(jsonBody(b)),
  },
  {
    name: "vek-certificate",
    about: "VCEK/VLEK certificate (cert table, Azure IMDS): platform/snp/verify.ts vekPublicKey",
    seeds: fixtures("snp/trustee-test-vcek.der", "snp/trustee-test-vlek.der", "snp/virtee-vcek_turin.der"),
    run: vekPublicKey,
  },
  {
    name: "pem-certificates",
    about: "PEM certificates from a host or service: platform/util/pem.ts certificatesFromPem, derSequenceSize",
    seeds: fixtures("snp/milan-ask-ark.pem", "snp/teekit-sev-gcp-vcek.pem", "azure/trustee-az-snp-vtpm/vcek.pem"),
    dictionary: [
      "-----BEGIN CERTIFICATE-----\n",
      "-----END CERTIFICATE-----\n",
      "-----BEGIN X-----\n",
      "=",
      "\r\n",
      "MII",
    ],
    run: (b) => {
      for (const der of certificatesFromPem(text(b), "fuzz PEM"))
        invariant(derSequenceSize(der) === der.length, "DER size");
    },
  },
  {
    name: "tdx-quote",
    about:
      "TDX quote v4/v5 (configfs-tsm outblob, Azure IMDS): platform/tdx/quote.ts parseTdxQuote, QE binding, claims",
    seeds: fixtures("tdx/tdx_quote_4.dat", "tdx/quote_v5_sample.dat", "tdx/tdx_prod_quote_SPR_E4.dat"),
    run: (b) => {
      const q = parseTdxQuote(b);
      verifyQeBinding(q);
      pckChainPem(q);
      decodeTdAttributes(q.body.tdAttributes);
      return trusteeQuoteClaims(q);
    },
  },
  {
    name: "tdx-report",
    about: "TDREPORT (Azure TDX HCL report): platform/tdx/tdreport.ts parseTdReport",
    seeds: fixtures("tdx/tdx_report_1.bin"),
    run: parseTdReport,
  },
  {
    name: "hcl-report",
    about: "Azure HCL report (vTPM NV index 0x01400001): platform/azure/hcl.ts parseHclReport",
    seeds: fixtures(
      "azure/trustee-az-snp-vtpm/hcl-report.bin",
      "azure/trustee-az-tdx-vtpm/hcl-report.bin",
      "azure/kinvolk/hcl-report-snp.bin",
      "azure/kinvolk/hcl-report-tdx.bin",
    ),
    dictionary: ['"keys"', '"kid":"HCLAkPub"', '"user-data"', '"kty":"RSA"', "{", "}", "[", "]", ","],
    run: (b) => reportDataBindsClaims(parseHclReport(b)),
  },
  {
    name: "hcl-claims",
    about: "Azure HCL report runtime claims (JSON in the NV index), edited as JSON with sizes fixed: parseHclReport",
    seeds: fixtures("azure/trustee-az-snp-vtpm/hcl-report.bin", "azure/kinvolk/hcl-report-tdx.bin"),
    mutate: mutateHclClaims,
    run: (b) => reportDataBindsClaims(parseHclReport(b)),
  },
  {
    name: "luks2-header",
    about: "LUKS2 header (host disk): platform/luks/luks2-header.ts parseLuks2Header, cvm-unlock token",
    seeds: async () => {
      const image = fixture("unlock/luks2-header.bin");
      return [image.slice(0, LUKS_HDR), image.slice(LUKS_HDR, 2 * LUKS_HDR)];
    },
    fix: fixLuks2Checksum,
    run: (b) => consumeLuks2(parseLuks2Header(b, b[0] === 0x53 ? "secondary" : "primary")),
  },
  {
    name: "luks2-json",
    about: "LUKS2 JSON metadata (host disk), edited as JSON and resealed: parseLuks2Json, tokens",
    seeds: async () => [fixture("unlock/luks2-header.bin").slice(0, LUKS_HDR)],
    mutate: mutateLuks2Json,
    fix: fixLuks2Checksum,
    run: (b) => consumeLuks2(parseLuks2Header(b)),
  },
  {
    name: "luks-token",
    about: "cvm-unlock LUKS2 token object (host disk): agent/config/layers/token.ts parseCvmToken",
    seeds: async () => [bytes(JSON.stringify(JSON.parse(text(fixture("unlock/luks2-header.json"))).tokens["0"]))],
    mutate: json,
    // The token arrives as an object of the parsed header JSON.
    run: (b) => {
      const v = jsonBody(b);
      return v !== null && typeof v === "object" && !Array.isArray(v)
        ? parseCvmToken("0", v as Record<string, unknown>)
        : REFUSED;
    },
  },
  {
    name: "gpt",
    about: "GPT header and entries (host disk): platform/luks/gpt.ts parseGptHeader, parseGptEntries",
    seeds: async () => {
      const image = fixture("unlock/gpt-root.bin");
      // The same disk with a 4-entry array: the entry parser is reached 30 times faster.
      const small = image.slice(0, 2 * GPT_SECTOR + 4 * 128);
      new DataView(small.buffer).setUint32(GPT_SECTOR + 80, 4, true);
      return [image, fixGptCrcs(small)];
    },
    fix: fixGptCrcs,
    run: (b) => {
      const h = parseGptHeader(b.subarray(GPT_SECTOR, 2 * GPT_SECTOR));
      const at = Number(h.entriesLba) * GPT_SECTOR;
      return parseGptEntries(h, b.subarray(Math.min(at, b.length), at + h.entryCount * h.entrySize));
    },
  },
  {
    name: "cmdline",
    about: "kernel command line (host-supplied unless measured): agent/config/layers/cmdline.ts parseCvmParams",
    seeds: fixtures("fuzz/cmdline.txt"),
    dictionary: ['"', " ", "=", "rd.cvm_unlock.", "rd.cvm_unlock.uuid=", "rd.cvm_unlock.kbs=", "\n", "\t", "\\"],
    run: (b) => parseCvmParams(text(b)),
  },
  {
    name: "mountinfo",
    about: "/proc/self/mountinfo (verify-root): agent/unlock/verify-root.ts parseMountinfo",
    seeds: fixtures("fuzz/mountinfo.txt"),
    dictionary: [" ", " - ", "\n", "\\040", "\\", ":", "-"],
    run: (b) => parseMountinfo(text(b)),
  },
  {
    name: "opened-state",
    about: "/run/cvm-unlock/opened.json (verify-root decides on it): agent/unlock/opened-state.ts decodeOpenedState",
    seeds: fixtures("fuzz/opened-state.json"),
    mutate: json,
    run: (b) => decodeOpenedState(text(b), "/run/cvm-unlock/opened.json"),
  },
  {
    name: "tsm-attributes",
    about: "configfs-tsm text attributes (generation, provider, privlevel_floor): platform/tsm/attributes.ts",
    seeds: fixtures("fuzz/tsm-generation.txt", "fuzz/tsm-provider.txt", "fuzz/tsm-privlevel.txt"),
    // Three parsers, one input: each may refuse independently.
    run: (b) =>
      [parseGeneration, parseProvider, parsePrivlevel].filter((parse) => refusalAllowed(() => parse(b))).length
        ? undefined
        : REFUSED,
  },
  {
    name: "kbs-challenge",
    about: "KBS /auth response body: agent/kbs/client.ts parseChallenge, selectHashAlgorithm, runtime digest",
    seeds: fixtures("fuzz/kbs-challenge.json", "fuzz/kbs-challenge-extra.json"),
    mutate: json,
    run: (b) => {
      const c = parseChallenge(b, "https://kbs.fuzz");
      const alg = selectHashAlgorithm(c.extraParams);
      return runtimeDigest(
        { nonce: c.nonce, "tee-pubkey": { kty: "EC", crv: "P-256", alg: "ECDH-ES+A256KW", x: "AA", y: "AA" } },
        alg,
      );
    },
  },
  {
    name: "kbs-token",
    about: "KBS /attest response body: agent/kbs/client.ts parseToken",
    seeds: fixtures("fuzz/kbs-token.json"),
    mutate: json,
    run: (b) => invariant(/^[A-Za-z0-9_\-.]+$/.test(parseToken(b, "https://kbs.fuzz")), "token characters"),
  },
  {
    name: "kbs-cookie",
    about: "KBS Set-Cookie header lines (one per line): agent/kbs/client.ts sessionCookie",
    seeds: fixtures("fuzz/set-cookie.txt"),
    dictionary: ["kbs-session-id=", ";", "=", '"', " ", "\n", "Expires=", ","],
    run: (b) => invariant(COOKIE_VALUE.test(sessionCookie(text(b).split("\n"), "https://kbs.fuzz")), "cookie value"),
  },
  {
    name: "kbs-error-information",
    about:
      "KBS error body (ErrorInformation): agent/kbs/error-info.ts parseErrorInformation (never throws), decideOnKbsError",
    seeds: fixtures("fuzz/error-information.json", "fuzz/error-information-deny.json"),
    mutate: json,
    expected: never,
    run: (b) => {
      const info = parseErrorInformation(b);
      if (info) invariant(info.detail.length <= 1025 && !/[\u0000-\u001f]/.test(info.detail), "detail sanitised");
      for (const phase of KBS_PHASES)
        invariant(
          decideOnKbsError(phase, 401, info, "https://kbs.fuzz", "a/b/c").error instanceof CvmError,
          "decision",
        );
      return info ?? REFUSED;
    },
  },
  {
    name: "retry-after",
    about: "Retry-After header (delta-seconds or HTTP-date): agent/kbs/transport.ts parseRetryAfter (never throws)",
    seeds: fixtures("fuzz/retry-after-seconds.txt", "fuzz/retry-after-date.txt"),
    dictionary: ["GMT", "Mon, ", " ", "9999", "-", "+", "e", ".", "Infinity", "NaN"],
    expected: never,
    run: (b) => {
      const ms = parseRetryAfter(text(b), Date.UTC(2026, 0, 1));
      invariant(ms === undefined || (Number.isFinite(ms) && ms >= 0), `Retry-After gave ${ms}`);
      return ms ?? REFUSED;
    },
  },
  jweTarget("jwe-ec", "ecdh-es-a256kw-p-256", ecKey),
  jweTarget("jwe-rsa", "rsa-oaep-256", rsaKey),
  {
    name: "key-document",
    about: "released KBS resource (raw key or key document): agent/unlock/key-document.ts parseKeyResource, checkPins",
    seeds: fixtures("fuzz/key-document.json"),
    mutate: json,
    run: (b) => {
      const k = parseKeyResource(Buffer.from(b));
      invariant(k.key.length >= 1 && k.key.length <= 8192, "key length");
      checkPins(k.pins, fixtureLuksHeader(), "/dev/fuzz");
    },
  },
  {
    name: "openssh-key",
    about:
      "released SSH host private key (openssh-key-v1 inside its PEM armour): agent/identity/openssh-key.ts parseOpensshPrivateKey",
    // The binary inside the armour is what a mutation should reach: armour it in run().
    seeds: async () => ["ssh/host_ed25519", "ssh/encrypted_ed25519", "ssh/ecdsa_host"].map(opensshBinary),
    run: (b) => {
      const k = parseOpensshPrivateKey(armorOpenssh(b));
      invariant(k.publicKey.length === 32 && k.seed.length === 32, "ed25519 key sizes");
      const again = parseOpensshPrivateKey(encodeOpensshPrivateKey(k));
      invariant(bytesEqual(again.publicKey, k.publicKey), "re-encoded key parses to the same key");
      const h = parseHostCertificateFor(k.publicKey);
      invariant(h === undefined || h.length === 32, "certificate key size");
    },
  },
  {
    name: "ssh-certificate",
    about:
      "released SSH host certificate (ssh-ed25519-cert-v01 blob): agent/identity/ssh-certificate.ts parseHostCertificate",
    seeds: async () =>
      ["ssh/host_ed25519-cert.pub", "ssh/host_ed25519-usercert.pub", "ssh/host_ed25519-ecdsacert.pub"].map(certBlob),
    run: (b) => {
      const c = parseHostCertificate(
        bytes(`ssh-ed25519-cert-v01@openssh.com ${Buffer.from(b).toString("base64")}\n`),
        certKey(b),
      );
      invariant(c.validAfter < c.validBefore, "validity window");
    },
  },
  {
    name: "cbor",
    about: "untrusted CBOR (evidence files, event records): platform/util/cbor.ts decodeCborUntrusted",
    seeds: fixtures("fuzz/evidence-record.cbor", "fuzz/measurement-records.cbor"),
    run: (b) => decodeCborUntrusted(b, "fuzz CBOR"),
  },
  {
    name: "evidence-record",
    about: "evidence record file (evidence --out, read back by inspect/fetch): agent/evidence-record.ts",
    seeds: fixtures("fuzz/evidence-record.cbor"),
    run: decodeEvidenceRecord,
  },
  {
    name: "measurement-records",
    about: "measurement event record (/run, CBOR sequence): agent/measure/events.ts decodeRecords",
    seeds: fixtures("fuzz/measurement-records.cbor"),
    run: decodeRecords,
  },
  {
    name: "verity-resource",
    about:
      "released verity resource (root hash, partitions, options, signature): agent/verity/resource.ts parseVerityResource, then the signature check",
    seeds: fixtures("verity/resource.json"),
    mutate: json,
    run: (b) => {
      for (const v of parseVerityResource(b)) {
        invariant(v.roothash.length === HASH_HEX_CHARS[v.hashAlg], "root hash length");
        invariant(["eio", "panic", "restart"].includes(v.options.corruption), "corruption mode");
        refusalAllowed(() => checkRootHashSignature(v.name, v.roothash, v.signature, verityRsaSigner()));
      }
    },
  },
  {
    name: "pkcs7-signature",
    about: "root hash signature (CMS SignedData DER): agent/verity/pkcs7.ts parseDetachedSignature, then verification",
    seeds: fixtures("verity/rsa-noattr.p7s", "verity/rsa-attr.p7s", "verity/ec-noattr.p7s", "verity/rsa-certs.p7s"),
    run: (b) => {
      parseDetachedSignature(b);
      checkRootHashSignature("root", text(fixture("verity/roothash.txt")), b, verityRsaSigner());
    },
  },
  {
    name: "verity-superblock",
    about:
      "dm-verity hash device superblock (host disk): agent/verity/superblock.ts parseVeritySuperblock, rootBlockLocation",
    seeds: fixtures("verity/superblock.bin"),
    run: (b) => {
      const p = parseVeritySuperblock(b);
      if (Object.hasOwn(HASH_HEX_CHARS, p.algorithm)) {
        const loc = rootBlockLocation(p, 0, true);
        invariant(loc.offset >= 0 && loc.size >= 512 && loc.size <= 65536, "root block location");
      }
    },
  },
  {
    name: "dm-verity-table",
    about:
      "`dmsetup table` of a verity mapping (verify-root, open): agent/verity/table.ts parseDmVerityTable, tableCarriesHash",
    seeds: fixtures("verity/dm-table.txt"),
    dictionary: [" ", "\n", "verity", "panic_on_corruption", "ignore_corruption", "root_hash_sig_key_desc", "0", "1"],
    run: (b) => {
      const t = parseDmVerityTable(text(b));
      if (typeof t === "string") return REFUSED;
      return tableCarriesHash(text(b), t.digest);
    },
  },
];

let rsaSigner: ReturnType<typeof signerCertificates> | undefined;
/** The test signer (test/fixtures/verity/rsa.pem) the verity targets verify against. */
function verityRsaSigner(): ReturnType<typeof signerCertificates> {
  return (rsaSigner ??= signerCertificates(text(fixture("verity/rsa.pem")), "rsa.pem"));
}

/** What the product does with a header once parsed: read its cvm-unlock tokens and its digest pin. */
function consumeLuks2(h: Luks2Header): void {
  for (const [id, t] of h.tokens) if (t.type === TOKEN_TYPE) refusalAllowed(() => parseCvmToken(id, t.raw));
  refusalAllowed(() => checkPins({ luks2DigestSha256: "0".repeat(64) }, h, "/dev/fuzz"));
}

export function findTarget(name: string, targets: FuzzTarget[] = TARGETS): FuzzTarget {
  const t = targets.find((x) => x.name === name);
  if (!t) throw new Error(`unknown fuzz target '${name}' (known: ${targets.map((x) => x.name).join(", ")})`);
  return t;
}

/** The default mutation of a target. */
export function mutatorOf(t: FuzzTarget): (r: Prng, seed: Uint8Array, other: Uint8Array) => Uint8Array {
  return t.mutate ?? ((r, seed, other) => mutateBytes(r, seed, other, t.dictionary));
}
