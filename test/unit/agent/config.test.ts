import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { findInitData } from "../../../agent/init-data/sources.ts";
import { Deadline } from "../../../platform/util/deadline.ts";
import { describe, expect, it } from "vitest";
import {
  mergeLayers,
  readConfigFile,
  noteReplacedTrustAnchors,
  noteWideningFlags,
} from "../../../agent/config/load.ts";
import { configSchema } from "../../../agent/config/schema.ts";
import { flagLayer, readCa } from "../../../agent/cli/common.ts";
import { parseArgs } from "../../../agent/cli/args.ts";
import { configOptions } from "../../../agent/cli/common.ts";
import { createLogger, silentLogger } from "../../../platform/util/log.ts";
import { MAX_CA_BYTES, readCaFile } from "../../../agent/config/ca-file.ts";
import { CvmError } from "../../../platform/util/errors.ts";
import { thrownBy } from "../../helpers/thrown.ts";
import { FileTooLargeError } from "../../../platform/util/files.ts";

describe("config schema", () => {
  it("defaults are closed: no sample, no plain http, auto tee", () => {
    const c = configSchema.parse({}, "");
    expect(c.platform.allow_sample).toBe(false);
    expect(c.kbs.insecure_http).toBe(false);
    expect(c.platform.tee).toBe("auto");
    expect(c.kbs.endpoints).toEqual([]);
  });

  it("rejects unknown keys and names the path", () => {
    expect(() => configSchema.parse({ kbs: { endpoint: ["https://x"] } }, "")).toThrow(
      /config kbs\.endpoint: unknown key/,
    );
    expect(() => configSchema.parse({ platfrom: {} }, "")).toThrow(/config platfrom: unknown key/);
  });

  it("rejects wrong types and names the path", () => {
    expect(() => configSchema.parse({ kbs: { insecure_http: "yes" } }, "")).toThrow(
      /config kbs\.insecure_http: expected boolean, got string/,
    );
    expect(() => configSchema.parse({ kbs: { endpoints: ["https://ok", 3] } }, "")).toThrow(
      /config kbs\.endpoints\[1\]: expected/,
    );
    expect(() => configSchema.parse({ deadline_s: 0 }, "")).toThrow(/deadline_s: must be >= 1/);
    expect(() => configSchema.parse({ platform: { tee: "sev" } }, "")).toThrow(/platform\.tee: expected "auto"/);
    expect(() => configSchema.parse({ resource: "a/b" }, "")).toThrow(/resource path/);
    expect(() => configSchema.parse({ kbs: { endpoints: ["ftp://x"] } }, "")).toThrow(/not a valid URL/);
  });

  it("accepts a full valid config", () => {
    const c = configSchema.parse(
      {
        kbs: {
          endpoints: ["https://kbs1:8080", "https://kbs2"],
          ca_file: "/etc/cvm-unlock/ca.pem",
          tee_key: "rsa-oaep-256",
        },
        resource: "default/key/root",
        platform: { tee: "tpm", tpm: "swtpm:127.0.0.1:2321" },
        deadline_s: 60,
      },
      "",
    );
    expect(c.kbs.endpoints).toHaveLength(2);
    expect(c.kbs.tee_key).toBe("rsa-oaep-256");
    expect(c.platform.tpm_ak_handle).toBe("0x81010002");
  });
});

describe("config layers", () => {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "cvmcfg-"));

  it("reads a file strictly and reports JSON errors", () => {
    const bad = path.join(tmp, "bad.json");
    fs.writeFileSync(bad, "{ not json");
    expect(() => readConfigFile(bad, true)).toThrow(/not valid JSON/);
    expect(readConfigFile(path.join(tmp, "missing.json"), false)).toBeNull();
    expect(() => readConfigFile(path.join(tmp, "missing.json"), true)).toThrow(/cannot read config file/);
    fs.writeFileSync(bad, "[1]");
    expect(() => readConfigFile(bad, true)).toThrow(/top level must be a JSON object/);
  });

  it("flags override the file and provenance says who set what", () => {
    const file = {
      source: "file:/etc/cvm-unlock/config.json",
      data: { kbs: { endpoints: ["https://a"], request_timeout_s: 5 }, resource: "r/t/x" },
    };
    const args = parseArgs(["--kbs", "https://b", "--kbs", "https://c", "--tee", "tpm"], configOptions);
    const { config, provenance } = mergeLayers([file, flagLayer(args)]);
    expect(config.kbs.endpoints).toEqual(["https://b", "https://c"]);
    expect(config.kbs.request_timeout_s).toBe(5);
    expect(config.platform.tee).toBe("tpm");
    expect(provenance.get("kbs.endpoints")).toBe("flags");
    expect(provenance.get("kbs.request_timeout_s")).toBe("file:/etc/cvm-unlock/config.json");
    expect(provenance.get("resource")).toBe("file:/etc/cvm-unlock/config.json");
    expect(provenance.has("deadline_s")).toBe(false);
  });

  it("an invalid layer names its source", () => {
    expect(() => mergeLayers([{ source: "luks-token", data: { kbs: { bogus: 1 } } }])).toThrow(/from luks-token/);
  });

  it("a guard can refuse what a host-controlled layer tries to set", () => {
    const guard = (data: Record<string, unknown>) => {
      if (JSON.stringify(data).includes("allow_sample")) throw new Error("token may not set platform.allow_sample");
    };
    expect(() => mergeLayers([{ source: "luks-token", data: { platform: { allow_sample: true } }, guard }])).toThrow(
      /may not set/,
    );
  });

  it("logs flags that replace the trusted file's endpoints or CA (never a silent change of trust anchor)", () => {
    const lines: string[] = [];
    const log = createLogger({ format: "text", verbose: false, write: (l) => lines.push(l) });
    const file = {
      source: "file:/etc/cvm-unlock/config.json",
      data: { kbs: { endpoints: ["https://a"], ca_file: "/etc/cvm-unlock/ca.pem" } },
    };
    noteReplacedTrustAnchors(
      [file, flagLayer(parseArgs(["--kbs", "https://b", "--ca", "/tmp/ca.pem"], configOptions))],
      log,
    );
    expect(lines.join("")).toMatch(/kbs\.endpoints from file:\/etc\/cvm-unlock\/config\.json replaced by flags/);
    expect(lines.join("")).toMatch(/kbs\.ca_file from file:\/etc\/cvm-unlock\/config\.json replaced by flags/);
    lines.length = 0;
    noteReplacedTrustAnchors(
      [{ source: "file:x", data: { deadline_s: 5 } }, flagLayer(parseArgs(["--kbs", "https://b"], configOptions))],
      log,
    );
    noteReplacedTrustAnchors([file, flagLayer(parseArgs(["--tee", "tpm"], configOptions))], log);
    expect(lines).toEqual([]);
  });

  it("logs widening flags as the tester's explicit choice", () => {
    const lines: string[] = [];
    const log = createLogger({ format: "text", verbose: false, write: (l) => lines.push(l) });
    const loaded = mergeLayers([flagLayer(parseArgs(["--allow-sample", "--insecure-http"], configOptions))]);
    noteWideningFlags(loaded, log);
    expect(lines.join("")).toMatch(/platform\.allow_sample enabled by flags/);
    expect(lines.join("")).toMatch(/kbs\.insecure_http enabled by flags/);
  });
});

describe("KBS CA handling fails closed", () => {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "cvmca-"));
  const PEM = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
  // two real certificates (AMD ASK + ARK, test/fixtures/snp/PROVENANCE.md)
  const REAL_CA = fs.readFileSync(path.join(import.meta.dirname, "../../fixtures/snp/milan-ask-ark.pem"), "utf8");
  const file = { source: "file:/etc/cvm-unlock/config.json", data: { kbs: { ca_pem: PEM } } };

  it("ca_pem and ca_file together are refused, naming both sources (a tester's --ca never silently loses)", () => {
    const args = parseArgs(["--ca", "/tmp/other-ca.pem"], configOptions);
    expect(() => mergeLayers([file, flagLayer(args)])).toThrow(
      /kbs\.ca_pem \(from file:\/etc\/cvm-unlock\/config\.json\) and kbs\.ca_file \(from flags\) are both set/,
    );
    expect(mergeLayers([file]).config.kbs.ca_pem).toBe(PEM);
  });

  it("a CA source without a certificate is refused instead of falling back to the system roots", () => {
    const cfg = (kbs: Record<string, unknown>) => configSchema.parse({ kbs }, "");
    expect(() => readCa(cfg({ ca_pem: "" }))).toThrow(/kbs\.ca_pem holds no PEM certificate/);
    const empty = path.join(tmp, "empty-ca.pem");
    fs.writeFileSync(empty, "");
    expect(() => readCa(cfg({ ca_file: empty }))).toThrow(/CA file \(.*empty-ca\.pem\) holds no PEM certificate/);
    expect(() => readCa(cfg({ ca_file: tmp }))).toThrow(/not a regular file/);
    const big = path.join(tmp, "big-ca.pem");
    fs.writeFileSync(big, PEM + "x".repeat(256 * 1024));
    expect(() => readCa(cfg({ ca_file: big }))).toThrow(
      /CA file is larger than the limit of 262144 bytes; refusing .*big-ca\.pem/,
    );
    expect(() => readCa(cfg({ ca_file: path.join(tmp, "missing-ca.pem") }))).toThrow(/cannot read CA file/);
    const good = path.join(tmp, "ca.pem");
    fs.writeFileSync(good, REAL_CA);
    expect(readCa(cfg({ ca_file: good }))).toBe(REAL_CA);
    expect(readCa(cfg({ ca_pem: REAL_CA }))).toBe(REAL_CA);
    expect(readCa(cfg({}))).toBeUndefined();
  });

  it("every certificate of the bundle must parse: a block that is not X.509 is refused, naming which", () => {
    const cfg = (kbs: Record<string, unknown>) => configSchema.parse({ kbs }, "");
    expect(() => readCa(cfg({ ca_pem: PEM }))).toThrow(/kbs\.ca_pem: certificate 1 of 1 does not parse/);
    const mixed = path.join(tmp, "mixed-ca.pem");
    fs.writeFileSync(mixed, REAL_CA + PEM);
    expect(() => readCa(cfg({ ca_file: mixed }))).toThrow(/mixed-ca\.pem\): certificate 3 of 3 does not parse/);
    const passwd = path.join(tmp, "passwd");
    fs.writeFileSync(passwd, "root:x:0:0:root:/root:/bin/bash\n");
    expect(() => readCa(cfg({ ca_file: passwd }))).toThrow(/passwd\) holds no PEM certificate/);
  });

  it("a config file larger than 1 MiB is refused (reading stops one byte past the limit)", () => {
    const big = path.join(tmp, "big.json");
    fs.writeFileSync(big, `{"resource":"${"a".repeat(1024 * 1024)}"}`);
    expect(() => readConfigFile(big, true)).toThrow(/config file is larger than the limit of 1048576 bytes/);
  });
});

describe("files named by configuration or flags are bounded regular files", () => {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "cvmfiles-"));
  const PEM = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";

  it("readCaFile: the caller's error kind (bind --ca is a usage error) and a named path", () => {
    const good = path.join(tmp, "ca.pem");
    const real = fs.readFileSync(path.join(import.meta.dirname, "../../fixtures/snp/milan-ask-ark.pem"), "utf8");
    fs.writeFileSync(good, real);
    expect(readCaFile(good, "--ca", "usage")).toBe(real);
    fs.writeFileSync(good, PEM);
    expect(thrownBy(() => readCaFile(good, "--ca", "usage"), CvmError).kind).toBe("usage");
    const big = path.join(tmp, "big.pem");
    fs.writeFileSync(big, PEM + " ".repeat(MAX_CA_BYTES));
    const tooBig = thrownBy(() => readCaFile(big, "--ca", "usage"), FileTooLargeError);
    expect(tooBig.kind).toBe("usage");
    expect(tooBig.path).toBe(big);
    expect(() => readCaFile(path.join(tmp, "nope.pem"), "--ca", "usage")).toThrow(/cannot read --ca \(.*nope\.pem\)/);
  });

  it("kbs.init_data_file: missing, not a regular file or over 64 KiB is a config error naming the key", async () => {
    const env = { root: "/", metadataUrl: "http://127.0.0.1:9", deadline: Deadline.unlimited(), log: silentLogger };
    const find = (file: string) => findInitData({ channels: [], file }, env);
    const kindOf = async (f: string) => {
      const e = await find(f).then(
        () => undefined,
        (x: unknown) => x,
      );
      expect(e).toBeInstanceOf(CvmError);
      return [(e as CvmError).kind, (e as CvmError).message];
    };
    const toml = path.join(tmp, "init.toml");
    fs.writeFileSync(toml, 'version = "0.1.0"\nalgorithm = "sha384"\n');
    expect((await find(toml))?.body).toBe('version = "0.1.0"\nalgorithm = "sha384"\n');
    fs.writeFileSync(path.join(tmp, "big.toml"), "#".repeat(64 * 1024 + 1));
    expect(await kindOf(path.join(tmp, "big.toml"))).toEqual([
      "config",
      `init-data file (kbs.init_data_file) is larger than the limit of 65536 bytes; refusing ${path.join(tmp, "big.toml")}`,
    ]);
    expect(await kindOf(tmp)).toEqual(["config", `init-data file (kbs.init_data_file) (${tmp}) is not a regular file`]);
    expect((await kindOf(path.join(tmp, "missing.toml")))[1]).toMatch(/cannot read init-data file .*ENOENT/);
  });
});

describe("argument parsing", () => {
  it("rejects unknown options and missing values", () => {
    expect(() => parseArgs(["--nope"], configOptions)).toThrow(/unknown option --nope/);
    expect(() => parseArgs(["--kbs"], configOptions)).toThrow(/--kbs needs a value/);
    expect(() => parseArgs(["--allow-sample=yes"], configOptions)).toThrow(/takes no value/);
    expect(() => parseArgs(["-x"], configOptions)).toThrow(/unknown option -x/);
  });
  it("supports --opt=value, repeatable lists and positionals", () => {
    const p = parseArgs(["--kbs=https://a", "default/key/root", "--kbs", "https://b", "--", "--kbs"], configOptions);
    expect(p.options.get("kbs")).toEqual(["https://a", "https://b"]);
    expect(p.positionals).toEqual(["default/key/root", "--kbs"]);
  });
});
