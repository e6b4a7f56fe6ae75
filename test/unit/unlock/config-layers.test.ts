import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { describe, expect, it } from "vitest";
import { mergeLayers, type ConfigLayer, type JsonObject } from "../../../agent/config/load.ts";
import { cmdlineLayer, parseCvmParams, splitCmdline } from "../../../agent/config/layers/cmdline.ts";
import { parseLuks2Header } from "../../../platform/luks/luks2-header.ts";
import {
  buildCvmToken,
  caFingerprint,
  findCvmToken,
  parseCvmToken,
  resourceAllowed,
  tokenLayer,
} from "../../../agent/config/layers/token.ts";
import { silentLogger } from "../../../platform/util/log.ts";

const FIX = path.join(import.meta.dirname, "../../fixtures/unlock");
const file = (data: JsonObject): ConfigLayer => ({ source: "file:test", data });

function rootWithCmdline(text: string): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "cmdline-"));
  fs.mkdirSync(path.join(dir, "proc"));
  fs.writeFileSync(path.join(dir, "proc/cmdline"), text);
  return dir;
}

describe("kernel command line layer", () => {
  it("splits like the kernel, honouring quotes", () => {
    expect(splitCmdline('root=/dev/x  a="b c" "d=e f" rd.cvm_unlock.name=r\n')).toEqual([
      "root=/dev/x",
      "a=b c",
      "d=e f",
      "rd.cvm_unlock.name=r",
    ]);
    expect(() => splitCmdline('a="b')).toThrow(/unterminated quote/);
    expect(() => splitCmdline("a=\u0001")).toThrow(/control/);
    expect(() => splitCmdline("x".repeat(5000))).toThrow(/longer/);
  });

  it("is strict about our parameters", () => {
    expect(parseCvmParams("quiet rd.cvm_unlock.uuid=6d1e7c52-2b4f-4d3e-9a51-0c3b8f2e7a10 rd.luks=0").get("uuid")).toBe(
      "6d1e7c52-2b4f-4d3e-9a51-0c3b8f2e7a10",
    );
    expect(() => parseCvmParams("rd.cvm_unlock.allow_sample=1")).toThrow(
      /unknown kernel parameter rd.cvm_unlock.allow_sample/,
    );
    expect(() => parseCvmParams("rd.cvm_unlock.name=a rd.cvm_unlock.name=b")).toThrow(/given twice/);
    expect(() => parseCvmParams("rd.cvm_unlock.name")).toThrow(/needs a value/);
  });

  it("is ignored unless the trusted config sets unlock.trust_cmdline", () => {
    const root = rootWithCmdline("rd.cvm_unlock.kbs=https://evil:1");
    const base = mergeLayers([file({})]).config;
    expect(cmdlineLayer(root, base, silentLogger)).toBeNull();
  });

  it("when trusted, selects the volume and endpoints, keeping pins and device from the trusted file", () => {
    const root = rootWithCmdline(
      "rd.cvm_unlock.partlabel=root rd.cvm_unlock.kbs=https://a:1,https://b:2 rd.cvm_unlock.device_timeout=30",
    );
    const trusted = file({
      unlock: {
        trust_cmdline: true,
        volumes: [
          { name: "root", uuid: "6d1e7c52-2b4f-4d3e-9a51-0c3b8f2e7a10", pins: { luks2_digest_sha256: "a".repeat(64) } },
        ],
      },
    });
    const base = mergeLayers([trusted]).config;
    const layer = cmdlineLayer(root, base, silentLogger)!;
    const { config, provenance } = mergeLayers([trusted, layer]);
    expect(config.kbs.endpoints).toEqual(["https://a:1", "https://b:2"]);
    expect(config.unlock.device_timeout_s).toBe(30);
    expect(config.unlock.volumes[0]!.partlabel).toBe("root");
    expect(config.unlock.volumes[0]!.uuid).toBeUndefined(); // a new selector replaces the old one
    expect(config.unlock.volumes[0]!.pins.luks2_digest_sha256).toBe("a".repeat(64));
    expect(provenance.get("kbs.endpoints")).toBe("kernel cmdline");
  });

  it("its guard refuses anything outside the allowed keys, naming the key", () => {
    const trusted = file({ unlock: { trust_cmdline: true } });
    const base = mergeLayers([trusted]).config;
    const layer = cmdlineLayer(rootWithCmdline("rd.cvm_unlock.name=x"), base, silentLogger)!;
    expect(() => mergeLayers([trusted, { ...layer, data: { platform: { allow_sample: true } } }])).toThrow(
      /kernel cmdline may not set platform.allow_sample/,
    );
    expect(() => mergeLayers([trusted, { ...layer, data: { kbs: { insecure_http: true } } }])).toThrow(
      /may not set kbs.insecure_http/,
    );
    expect(() =>
      mergeLayers([
        trusted,
        {
          ...layer,
          data: { unlock: { volumes: [{ name: "x", pins: { uuid: "6d1e7c52-2b4f-4d3e-9a51-0c3b8f2e7a10" } }] } },
        },
      ]),
    ).toThrow(/may not set unlock.volumes\[0\].pins/);
  });
});

describe("LUKS2 token layer", () => {
  const header = parseLuks2Header(
    new Uint8Array(fs.readFileSync(path.join(FIX, "luks2-header.bin")).subarray(0, 16384)),
  );
  const found = findCvmToken(header)!;

  it("reads the cvm-unlock token from the header", () => {
    expect(found.id).toBe("0");
    expect(found.token).toEqual({
      endpoints: ["https://kbs.example:8080"],
      resource: "default/key/root",
      caSha256: "a".repeat(64),
      keyslots: ["0"],
    });
    expect(parseCvmToken("0", buildCvmToken(found.token) as Record<string, unknown>)).toEqual(found.token);
  });

  it("validates token contents strictly", () => {
    const t = buildCvmToken(found.token) as Record<string, unknown>;
    expect(() => parseCvmToken("0", { ...t, insecure_http: true })).toThrow(/unknown member "insecure_http"/);
    expect(() => parseCvmToken("0", { ...t, cvm_unlock_token: 2 })).toThrow(/version 2/);
    expect(() => parseCvmToken("0", { ...t, kbs_endpoints: ["ftp://x"] })).toThrow(/kbs_endpoints/);
    expect(() => parseCvmToken("0", { ...t, resource: "../etc" })).toThrow(/resource/);
  });

  /** A CA file in the initramfs and the header's token pinning it by fingerprint (real certificates: CA files must parse). */
  function tokenPinningCa(fixture: string) {
    const caPem = fs.readFileSync(path.join(import.meta.dirname, "../../fixtures/snp", fixture), "utf8");
    const caFile = path.join(fs.mkdtempSync(path.join(os.tmpdir(), "tok-")), "ca.pem");
    fs.writeFileSync(caFile, caPem);
    return { caPem, caFile, tok: { id: "0", token: { ...found.token, caSha256: caFingerprint(caPem) } } };
  }

  it("may only select endpoints, CAs and resources the trusted config allows", () => {
    const { caFile, tok } = tokenPinningCa("milan-ask-ark.pem");
    const allow = (o: JsonObject) => file({ unlock: { luks_token: { trust: true, ...o } } });
    const good = allow({
      allowed_endpoints: ["https://kbs.example:8080"],
      allowed_ca_files: [caFile],
      allowed_resources: ["default/key/*"],
    });
    const merged = mergeLayers([good, tokenLayer("/dev/vda2", tok, mergeLayers([good]).config)]);
    expect(merged.config.kbs.endpoints).toEqual(["https://kbs.example:8080"]);
    expect(merged.config.kbs.ca_file).toBe(caFile);
    expect(merged.provenance.get("resource")).toBe("LUKS2 token 0 on /dev/vda2");

    const noEp = allow({
      allowed_endpoints: ["https://other:1"],
      allowed_ca_files: [caFile],
      allowed_resources: ["default/key/root"],
    });
    expect(() => mergeLayers([noEp, tokenLayer("/dev/vda2", tok, mergeLayers([noEp]).config)])).toThrow(
      /may not set kbs.endpoints to https:\/\/kbs.example:8080/,
    );
    const noRes = allow({
      allowed_endpoints: ["https://kbs.example:8080"],
      allowed_ca_files: [caFile],
      allowed_resources: ["other/key/*"],
    });
    expect(() => mergeLayers([noRes, tokenLayer("/dev/vda2", tok, mergeLayers([noRes]).config)])).toThrow(
      /may not set resource to default\/key\/root/,
    );
    const noCa = allow({ allowed_endpoints: ["https://kbs.example:8080"], allowed_resources: ["default/key/root"] });
    expect(() => tokenLayer("/dev/vda2", tok, mergeLayers([noCa]).config)).toThrow(/may not set kbs.ca_sha256/);
    // A forged layer with extra keys is caught by the guard itself.
    const layer = tokenLayer("/dev/vda2", tok, mergeLayers([good]).config);
    expect(() => mergeLayers([good, { ...layer, data: { ...layer.data, platform: { allow_sample: true } } }])).toThrow(
      /may not set platform.allow_sample/,
    );
  });

  it("can never switch TLS off, and its CA pin never silently loses to a trusted inline ca_pem", () => {
    const { caPem, caFile, tok } = tokenPinningCa("trustee-genoa_ask_ark_asvk.pem");
    const luks_token = {
      trust: true,
      allowed_endpoints: ["https://kbs.example:8080"],
      allowed_ca_files: [caFile],
      allowed_resources: ["default/key/root"],
    };
    const trusted = file({ unlock: { luks_token } });
    const layer = tokenLayer("/dev/vda2", tok, mergeLayers([trusted]).config);
    expect(() =>
      mergeLayers([
        trusted,
        { ...layer, data: { ...layer.data, kbs: { ...(layer.data.kbs as JsonObject), insecure_http: true } } },
      ]),
    ).toThrow(/LUKS2 token 0 on \/dev\/vda2 may not set kbs.insecure_http/);
    const inline = file({ kbs: { ca_pem: caPem }, unlock: { luks_token } });
    expect(() => mergeLayers([inline, tokenLayer("/dev/vda2", tok, mergeLayers([inline]).config)])).toThrow(
      /kbs\.ca_pem \(from file:test\) and kbs\.ca_file \(from LUKS2 token 0 on \/dev\/vda2\) are both set/,
    );
  });

  it("resource patterns: exact or REPO/TYPE/* (one segment)", () => {
    expect(resourceAllowed("a/b/c", ["a/b/*"])).toBe(true);
    expect(resourceAllowed("a/b/c", ["a/b/c"])).toBe(true);
    expect(resourceAllowed("a/bb/c", ["a/b/*"])).toBe(false);
    expect(resourceAllowed("a/b/c", [])).toBe(false);
  });
});

describe("kernel command line: property", () => {
  it("random command lines either parse or fail with a config error", async () => {
    const { prng } = await import("../../helpers/prng.ts");
    const { CvmError } = await import("../../../platform/util/errors.ts");
    const r = prng(4242);
    const atoms = [
      "rd.cvm_unlock.",
      "uuid",
      "name",
      "kbs",
      "=",
      '"',
      " ",
      "x",
      "\t",
      "rd.luks=0",
      "\u0001",
      "partlabel",
      "resource",
      "a/b/c",
      ",",
    ];
    for (let i = 0; i < 500; i++) {
      const text = Array.from({ length: r.int(0, 12) }, () => r.pick(atoms)).join("");
      try {
        parseCvmParams(text);
      } catch (e) {
        expect(e, JSON.stringify(text)).toBeInstanceOf(CvmError);
      }
    }
  });
});
