// init-data: the document codec, the channels a host writes (SMBIOS type 11, fw_cfg, cmdline, cloud
// metadata on loopback), the configuration layer's guard and the binding rules. Everything here is
// host input: each test either pins the exact accepted shape or plays a host that lies.
import * as fs from "node:fs";
import * as http from "node:http";
import type { AddressInfo } from "node:net";
import * as os from "node:os";
import * as path from "node:path";
import { gzipSync } from "node:zlib";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { sha256, sha384 } from "@noble/hashes/sha2.js";
import { checkLaunchBinding, expectedPcr8, pcr8Action } from "../../../agent/init-data/binding.ts";
import { initDataSettings, MAX_INIT_DATA_BYTES, parseInitData } from "../../../agent/init-data/document.ts";
import { initDataLayer, initDataLayerData } from "../../../agent/init-data/layer.ts";
import { decodeChannelValue, findInitData, FW_CFG_NAME, SMBIOS_PREFIX } from "../../../agent/init-data/sources.ts";
import type { InitDataChannel } from "../../../agent/init-data/channels.ts";
import { mergeLayers } from "../../../agent/config/load.ts";
import { configSchema } from "../../../agent/config/schema.ts";
import { smbiosOemStrings } from "../../../platform/firmware/smbios.ts";
import { snpEvidenceJsonValue } from "../../../platform/snp/json.ts";
import { b64, b64url, fitTo, hex, utf8 } from "../../../platform/util/bytes.ts";
import { Deadline } from "../../../platform/util/deadline.ts";
import { CvmError, ParseError } from "../../../platform/util/errors.ts";
import { silentLogger } from "../../../platform/util/log.ts";
import { testPki, unsignedReport } from "../../helpers/snp-fixtures.ts";
import { makeTdxQuote } from "../../helpers/tdx-fixtures.ts";

const PEER_PODS = `version = "0.1.0"
algorithm = "sha256"

[data]
"aa.toml" = '''
[token_configs]
[token_configs.kbs]
url = "https://kbs.example:8080"
cert = """
-----BEGIN CERTIFICATE-----
MIIB
-----END CERTIFICATE-----
"""
'''
"cdh.toml" = '''
[kbc]
name = "cc_kbc"
url = "https://kbs.example:8080"
'''
"policy.rego" = '''
package agent_policy
'''
`;

function kindOf(fn: () => unknown): string {
  try {
    fn();
  } catch (e) {
    if (e instanceof ParseError) return "parse";
    if (e instanceof CvmError) return e.kind;
    return `raw ${(e as Error).constructor.name}`;
  }
  return "none";
}

describe("init-data document", () => {
  it("parses trustee's TOML and digests the text exactly as sent", () => {
    const d = parseInitData(utf8(PEER_PODS), "test");
    expect(d.algorithm).toBe("sha256");
    expect(hex(d.digest)).toBe(hex(sha256(utf8(PEER_PODS))));
    expect(d.body).toBe(PEER_PODS);
    expect(Object.keys(d.data).sort()).toEqual(["aa.toml", "cdh.toml", "policy.rego"]);
    const s = initDataSettings(d);
    expect(s.kbsUrl).toBe("https://kbs.example:8080");
    expect(s.kbsCertPem).toContain("BEGIN CERTIFICATE");
  });

  it("sha384 and sha512 digest with their algorithm", () => {
    const t384 = PEER_PODS.replace('"sha256"', '"sha384"');
    expect(hex(parseInitData(utf8(t384), "t").digest)).toBe(hex(sha384(utf8(t384))));
    expect(parseInitData(utf8(PEER_PODS.replace('"sha256"', '"sha512"')), "t").digest).toHaveLength(64);
  });

  it.each([
    ["IANA names trustee cannot parse", PEER_PODS.replace('"sha256"', '"sha-256"'), /algorithm/],
    ["sm3 (not implemented here)", PEER_PODS.replace('"sha256"', '"sm3"'), /algorithm/],
    ["missing version", PEER_PODS.replace('version = "0.1.0"\n', ""), /version/],
    ["numeric version", PEER_PODS.replace('version = "0.1.0"', "version = 1"), /version/],
    ["non-string data value", 'version = "1"\nalgorithm = "sha256"\n[data]\nx = 3\n', /data."x" must be a string/],
    ["data not a table", 'version = "1"\nalgorithm = "sha256"\ndata = "x"\n', /must be a table/],
    ["broken TOML", 'version = "1\nalgorithm = "sha256"\n', /not valid TOML/],
    ["broken nested aa.toml", 'version = "1"\nalgorithm = "sha256"\n[data]\n"aa.toml" = "[x"\n', /aa.toml/],
  ])("refuses %s with a config error naming it", (_name, text, msg) => {
    let err: unknown;
    try {
      initDataSettings(parseInitData(utf8(text), "test"));
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(CvmError);
    expect((err as CvmError).kind).toBe("config");
    expect((err as Error).message).toMatch(msg);
  });

  it("refuses non-UTF-8 bytes, oversized documents and deep nesting without a raw exception", () => {
    expect(kindOf(() => parseInitData(new Uint8Array([0xff, 0xfe, 0x41]), "t"))).toBe("config");
    expect(kindOf(() => parseInitData(new Uint8Array(MAX_INIT_DATA_BYTES + 1).fill(0x23), "t"))).toBe("config");
    const deep = 'version = "1"\nalgorithm = "sha256"\nx = ' + "[".repeat(5000) + "]".repeat(5000) + "\n";
    expect(kindOf(() => parseInitData(utf8(deep), "t"))).toBe("config");
  });

  it("aa.toml and cdh.toml naming different KBSes is refused rather than guessed", () => {
    const text = PEER_PODS.replace(
      "url = \"https://kbs.example:8080\"\n'''\n\"policy",
      "url = \"https://other:1\"\n'''\n\"policy",
    );
    expect(text).not.toBe(PEER_PODS);
    expect(() => initDataSettings(parseInitData(utf8(text), "t"))).toThrow(/different KBS URLs/);
  });

  it("cvm-unlock.toml and cvm-unlock.json become our configuration; both at once is refused", () => {
    const own = `version = "1"\nalgorithm = "sha256"\n[data]\n"cvm-unlock.toml" = '''\nresource = "a/b/c"\n[[unlock.volumes]]\nname = "root"\ngpt_auto_root = true\n'''\n`;
    expect(initDataSettings(parseInitData(utf8(own), "t")).config).toMatchObject({
      resource: "a/b/c",
      unlock: { volumes: [{ name: "root", gpt_auto_root: true }] },
    });
    const json = `version = "1"\nalgorithm = "sha256"\n[data]\n"cvm-unlock.json" = '{"resource":"a/b/c"}'\n`;
    expect(initDataSettings(parseInitData(utf8(json), "t")).config).toEqual({ resource: "a/b/c" });
    const both = own.replace("[data]\n", `[data]\n"cvm-unlock.json" = '{}'\n`);
    expect(() => initDataSettings(parseInitData(utf8(both), "t"))).toThrow(/keep one/);
  });
});

describe("init-data as a configuration layer", () => {
  const generic = configSchema.parse({ init_data: { configure: true } }, "");
  const image = configSchema.parse({}, "");
  const withOwn = (own: string) =>
    parseInitData(
      utf8(`version = "1"\nalgorithm = "sha256"\n[data]\n"cvm-unlock.toml" = '''\n${own}\n'''\n`),
      "smbios",
    );

  it("maps aa.toml's KBS and certificate to kbs.endpoints and kbs.ca_pem", () => {
    expect(initDataLayerData(parseInitData(utf8(PEER_PODS), "t"))).toMatchObject({
      kbs: { endpoints: ["https://kbs.example:8080"], ca_pem: expect.stringContaining("BEGIN CERTIFICATE") },
    });
  });

  it("is used only when the trusted config sets init_data.configure", () => {
    expect(initDataLayer(parseInitData(utf8(PEER_PODS), "t"), image, silentLogger)).toBeNull();
    const layer = initDataLayer(parseInitData(utf8(PEER_PODS), "smbios"), generic, silentLogger)!;
    expect(layer.source).toMatch(/^init-data:smbios sha256:[0-9a-f]{64}$/);
    const merged = mergeLayers([{ source: "file", data: { init_data: { configure: true } } }, layer]);
    expect(merged.config.kbs.endpoints).toEqual(["https://kbs.example:8080"]);
    expect(merged.provenance.get("kbs.endpoints")).toBe(layer.source);
  });

  it("may name the verity resource of a generic image (docs/VERITY.md), nothing else of verity", () => {
    const layer = initDataLayer(withOwn('[verity]\nresource = "default/verity/root"'), generic, silentLogger)!;
    const merged = mergeLayers([{ source: "file", data: { init_data: { configure: true } } }, layer]);
    expect(merged.config.verity).toMatchObject({ resource: "default/verity/root", device_timeout_s: 90 });
    expect(merged.config.verity?.signer_cert).toBeUndefined();
  });

  it.each([
    ["kbs.insecure_http", "[kbs]\ninsecure_http = true"],
    ["platform.allow_sample", "[platform]\nallow_sample = true"],
    ["platform.tpm", '[platform]\ntpm = "swtpm:10.0.0.1:2321"'],
    ["unlock.trust_cmdline", "[unlock]\ntrust_cmdline = true"],
    ["init_data.required", "[init_data]\nrequired = false"],
    ["kbs.ca_file", '[kbs]\nca_file = "/etc/passwd"'],
    // the owner's signer lives in the measured initramfs: the host cannot name its own certificate
    ["verity.signer_cert", '[verity]\nresource = "a/b/c"\nsigner_cert = "/run/host.pem"'],
  ])("can never widen what the trusted config allows: %s", (key, own) => {
    const layer = initDataLayer(withOwn(own), generic, silentLogger)!;
    expect(() => mergeLayers([{ source: "file", data: { init_data: { configure: true } } }, layer])).toThrow(
      new RegExp(`may not set ${key.replace(".", "\\.")}`),
    );
  });
});

// ---- channels ------------------------------------------------------------------------------------

/** An SMBIOS type 11 structure as QEMU builds it. */
function smbios11(strings: string[], count = strings.length): Uint8Array {
  const head = [11, 5, 0x00, 0x11, count];
  const set = strings.length
    ? Buffer.concat([...strings.map((s) => Buffer.from(s + "\0")), Buffer.from([0])])
    : Buffer.from([0, 0]);
  return new Uint8Array(Buffer.concat([Buffer.from(head), set]));
}

describe("SMBIOS type 11 codec", () => {
  it("reads the OEM strings in order", () => {
    expect(smbiosOemStrings(smbios11(["a", "io.cvm-unlock.init-data:xyz"]))).toEqual([
      "a",
      "io.cvm-unlock.init-data:xyz",
    ]);
    expect(smbiosOemStrings(smbios11([]))).toEqual([]);
  });
  it.each([
    ["a count larger than the string set", smbios11(["a"], 3)],
    ["an unterminated string set", smbios11(["abc"]).subarray(0, 8)],
    ["a formatted area shorter than its header", new Uint8Array([11, 2, 0, 0, 0, 0])],
    ["another structure type", Uint8Array.from([1, ...smbios11(["a"]).subarray(1)])],
    ["a truncated header", new Uint8Array([11])],
  ])("refuses %s as a ParseError", (_n, raw) => {
    expect(kindOf(() => smbiosOemStrings(raw))).toBe("parse");
  });
});

describe("init-data channels", () => {
  let root: string;
  const deadline = Deadline.unlimited();
  const env = () => ({ root, metadataUrl: "http://127.0.0.1:9", deadline, log: silentLogger });
  const find = (channels: InitDataChannel[]) => findInitData({ channels }, env());
  beforeAll(() => {
    root = fs.mkdtempSync(path.join(os.tmpdir(), "init-data-root-"));
  });
  afterEach(() => {
    fs.rmSync(root, { recursive: true, force: true });
    fs.mkdirSync(root);
  });
  afterAll(() => fs.rmSync(root, { recursive: true, force: true }));

  const put = (rel: string, data: Uint8Array | string) => {
    fs.mkdirSync(path.dirname(path.join(root, rel)), { recursive: true });
    fs.writeFileSync(path.join(root, rel), data);
  };

  it("decodes base64url, padded or standard base64, and gzip inside (peer-pods annotations)", () => {
    const raw = utf8(PEER_PODS);
    expect(decodeChannelValue(b64url(raw), "t")).toEqual(raw);
    expect(decodeChannelValue(b64(raw), "t")).toEqual(raw);
    expect(decodeChannelValue(b64(new Uint8Array(gzipSync(raw))), "t")).toEqual(raw);
  });

  it("a gzip bomb stops at the size limit with a config error", () => {
    const bomb = new Uint8Array(gzipSync(Buffer.alloc(10 * 1024 * 1024)));
    expect(kindOf(() => decodeChannelValue(b64url(bomb), "smbios"))).toBe("config");
  });

  it("SMBIOS type 11: finds our string among others; two of ours are refused", async () => {
    put("sys/firmware/dmi/entries/11-0/raw", smbios11(["vendor thing", SMBIOS_PREFIX + b64url(utf8(PEER_PODS))]));
    const d = await find(["smbios"]);
    expect(d?.origin).toBe("smbios");
    expect(d?.body).toBe(PEER_PODS);
    put("sys/firmware/dmi/entries/11-1/raw", smbios11([SMBIOS_PREFIX + b64url(utf8(PEER_PODS))]));
    await expect(find(["smbios"])).rejects.toThrow(/refusing to choose/);
  });

  it("fw_cfg carries the raw TOML", async () => {
    put(`sys/firmware/qemu_fw_cfg/by_name/${FW_CFG_NAME}/raw`, PEER_PODS);
    expect((await find(["fw_cfg"]))?.origin).toBe("fw_cfg");
  });

  it("the kernel cmdline carries base64url; given twice is refused", async () => {
    put("proc/cmdline", `quiet cvm_unlock.init_data=${b64url(utf8(PEER_PODS))} ro\n`);
    expect((await find(["cmdline"]))?.origin).toBe("cmdline");
    put("proc/cmdline", `cvm_unlock.init_data=${b64url(utf8(PEER_PODS))} cvm_unlock.init_data=AAAA\n`);
    await expect(find(["cmdline"])).rejects.toThrow(/given 2 times/);
  });

  it("channels are tried in the configured order, first found wins; disabled channels are never read", async () => {
    const other = PEER_PODS.replace("0.1.0", "0.1.1");
    put(`sys/firmware/qemu_fw_cfg/by_name/${FW_CFG_NAME}/raw`, other);
    put("proc/cmdline", `cvm_unlock.init_data=${b64url(utf8(PEER_PODS))}\n`);
    expect((await find(["smbios", "fw_cfg", "cmdline"]))?.body).toBe(other);
    expect((await find(["cmdline", "fw_cfg"]))?.body).toBe(PEER_PODS);
    expect(await find(["smbios"])).toBeUndefined();
    expect(await find([])).toBeUndefined();
  });

  it("an oversized fw_cfg file is refused, not read whole", async () => {
    put(`sys/firmware/qemu_fw_cfg/by_name/${FW_CFG_NAME}/raw`, Buffer.alloc(MAX_INIT_DATA_BYTES + 10, 0x23));
    await expect(find(["fw_cfg"])).rejects.toThrow(/larger than the limit/);
  });
});

describe("init-data from cloud metadata (a loopback stand-in for 169.254.169.254)", () => {
  let server: http.Server;
  let url: string;
  const seen: { method: string; url: string; headers: http.IncomingHttpHeaders }[] = [];
  const encoded = b64url(utf8(PEER_PODS));
  beforeAll(async () => {
    server = http.createServer((req, res) => {
      seen.push({ method: req.method!, url: req.url!, headers: req.headers });
      if (
        req.url === "/computeMetadata/v1/instance/attributes/cvm-unlock-init-data" &&
        req.headers["metadata-flavor"] === "Google"
      )
        return void res.end(encoded);
      if (req.url?.startsWith("/metadata/instance/compute/userData?") && req.headers.metadata === "true")
        return void res.end(encoded);
      if (req.url === "/latest/api/token" && req.method === "PUT") return void res.end("tok123");
      if (req.url === "/latest/user-data" && req.headers["x-aws-ec2-metadata-token"] === "tok123")
        return void res.end(encoded);
      if (req.url === "/slow/computeMetadata/v1/instance/attributes/cvm-unlock-init-data") {
        // one byte every 300 ms: never idle long enough for a socket timeout
        res.writeHead(200);
        const t = setInterval(() => res.write("A"), 300);
        res.on("close", () => clearInterval(t));
        return;
      }
      if (req.url === "/big/computeMetadata/v1/instance/attributes/cvm-unlock-init-data")
        return void res.end(Buffer.alloc(200 * 1024, 0x41));
      res.statusCode = 404;
      res.end();
    });
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  afterAll(() => server.close());
  const find = (ch: InitDataChannel, base = url) =>
    findInitData(
      { channels: [ch] },
      { root: "/nonexistent", metadataUrl: base, deadline: Deadline.unlimited(), log: silentLogger },
    );

  it.each(["gcp", "azure", "aws"] as const)("%s: the provider's request shape, headers included", async (ch) => {
    const d = await find(ch);
    expect(d?.origin).toBe(ch);
    expect(d?.body).toBe(PEER_PODS);
  });

  it("nothing there (404, or nobody listening) means no init-data, not an error", async () => {
    expect(await find("gcp", `${url}/missing`)).toBeUndefined();
    expect(await find("aws", "http://127.0.0.1:9")).toBeUndefined();
  });

  it("a server that trickles its answer is given up on after the 2 s bound, not kept until the deadline", async () => {
    const t0 = Date.now();
    expect(await find("gcp", `${url}/slow`)).toBeUndefined();
    expect(Date.now() - t0).toBeLessThan(15_000);
  });

  it("an oversized answer is dropped", async () => {
    expect(await find("gcp", `${url}/big`)).toBeUndefined();
  });
});

// ---- binding -------------------------------------------------------------------------------------

describe("init-data binding rules", () => {
  const doc = parseInitData(utf8(PEER_PODS), "t");

  it("PCR 8: reset -> extend; already the init-data value -> nothing (idempotent); anything else -> refused", () => {
    expect(pcr8Action(new Uint8Array(32), doc.digest)).toBe("extend");
    expect(pcr8Action(expectedPcr8(doc.digest), doc.digest)).toBe("bound");
    expect(kindOf(() => pcr8Action(new Uint8Array(32).fill(1), doc.digest))).toBe("platform");
    expect(hex(expectedPcr8(doc.digest))).toBe(hex(sha256(new Uint8Array([...new Uint8Array(32), ...doc.digest]))));
  });

  it("snp: HOST_DATA must be the digest regularized to 32 bytes", () => {
    const pki = testPki();
    const evidence = (hostData: Uint8Array) =>
      snpEvidenceJsonValue(unsignedReport(pki, { reportData: new Uint8Array(64), hostData }), null);
    expect(() => checkLaunchBinding("snp", evidence(fitTo(doc.digest, 32)), doc)).not.toThrow();
    expect(kindOf(() => checkLaunchBinding("snp", evidence(new Uint8Array(32)), doc))).toBe("evidence");
    // sha512 init-data: trustee truncates to 32
    const d512 = parseInitData(utf8(PEER_PODS.replace('"sha256"', '"sha512"')), "t");
    expect(() => checkLaunchBinding("snp", evidence(d512.digest.subarray(0, 32)), d512)).not.toThrow();
  });

  it("tdx: MRCONFIGID must be the digest regularized to 48 bytes (sha256 padded with zeros)", () => {
    const quote = (mrConfigId: Uint8Array) => ({
      cc_eventlog: null,
      quote: b64(makeTdxQuote({ version: 4, reportData: new Uint8Array(64), mrConfigId })),
    });
    expect(() => checkLaunchBinding("tdx", quote(fitTo(doc.digest, 48)), doc)).not.toThrow();
    expect(kindOf(() => checkLaunchBinding("tdx", quote(new Uint8Array(48)), doc))).toBe("evidence");
    expect(kindOf(() => checkLaunchBinding("tdx", { quote: 5 }, doc))).toBe("evidence");
  });

  it("vTPM TEEs are bound through PCR 8, not through the report", () => {
    expect(() => checkLaunchBinding("tpm", {}, doc)).not.toThrow();
  });
});
