// `config --check` (the dracut module's build-time check) refuses what `unlock` would refuse at
// boot, with unlock's own errors, and `config --files` lists every file the initramfs needs.
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { describe, expect, it } from "vitest";
import { checkUnlockConfig } from "../../../agent/config/check.ts";
import { configFiles, filesUnder, INSTALLED_FILE_KEYS, RUNTIME_PATH_KEYS } from "../../../agent/config/files.ts";
import { configSchema, type Config } from "../../../agent/config/schema.ts";
import type { Schema } from "../../../agent/config/validate.ts";

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "config-check-"));
const CA = fs.readFileSync(path.join(import.meta.dirname, "../../fixtures/snp/milan-ask-ark.pem"), "utf8");
const caFile = path.join(tmp, "ca.pem");
fs.writeFileSync(caFile, CA);
const initData = path.join(tmp, "init-data.toml");
fs.writeFileSync(initData, 'version = "0.1.0"\n');

const GOOD = {
  kbs: { endpoints: ["https://kbs.example:8080"], ca_file: caFile },
  resource: "default/key/root",
  unlock: { volumes: [{ name: "root", gpt_auto_root: true }] },
};
type J = Record<string, any>;
const cfg = (over: (c: J) => void = () => {}): Config => {
  const c = structuredClone(GOOD) as J;
  over(c);
  return configSchema.parse(c, "");
};

describe("config --check refuses what unlock refuses", () => {
  it("accepts a complete configuration without notes", () => {
    expect(checkUnlockConfig(cfg())).toEqual([]);
  });

  it.each<[string, J, RegExp]>([
    ["{} (no volume)", {}, /no volume to unlock/],
    ["a volume without a selector", { ...GOOD, unlock: { volumes: [{ name: "root" }] } }, /volume root: set one of/],
    ["no resource", { ...GOOD, resource: undefined }, /volume root: no KBS resource/],
    ["tee sample without allow_sample", { ...GOOD, platform: { tee: "sample" } }, /tee 'sample' is insecure/],
    [
      "an http:// endpoint without insecure_http",
      { ...GOOD, kbs: { ...GOOD.kbs, endpoints: ["http://kbs.example"] } },
      /plain http:\/\/, refused/,
    ],
    ["no endpoint", { ...GOOD, kbs: { ca_file: caFile } }, /no KBS endpoint configured/],
    ["ca_file /etc/passwd", { ...GOOD, kbs: { ...GOOD.kbs, ca_file: "/etc/passwd" } }, /holds no PEM certificate/],
    [
      "a missing ca_file",
      { ...GOOD, kbs: { ...GOOD.kbs, ca_file: path.join(tmp, "nope.pem") } },
      /cannot read CA file/,
    ],
    [
      "a missing init_data_file",
      { ...GOOD, kbs: { ...GOOD.kbs, init_data_file: path.join(tmp, "nope.toml") } },
      /cannot read kbs\.init_data_file/,
    ],
    [
      "an allowed_ca_files entry that is not a CA bundle",
      { ...GOOD, unlock: { ...GOOD.unlock, luks_token: { trust: true, allowed_ca_files: [initData] } } },
      /init-data\.toml\) holds no PEM certificate/,
    ],
    [
      "an http:// allowed_endpoints entry",
      { ...GOOD, unlock: { ...GOOD.unlock, luks_token: { trust: true, allowed_endpoints: ["http://other"] } } },
      /plain http:\/\/, refused/,
    ],
  ])("refuses %s", (_name, raw, message) => {
    const c = configSchema.parse(raw, "");
    let err: unknown;
    try {
      checkUnlockConfig(c);
    } catch (e) {
      err = e;
    }
    expect(err, "accepted").toBeDefined();
    expect((err as { kind?: string }).kind).toBe("config");
    expect((err as Error).message).toMatch(message);
  });

  it("http:// with insecure_http and sample with allow_sample are the owner's explicit choice", () => {
    expect(
      checkUnlockConfig(
        cfg((c) => {
          c.kbs.endpoints = ["http://kbs.example"];
          c.kbs.insecure_http = true;
          c.platform = { tee: "sample", allow_sample: true };
        }),
      ),
    ).toEqual([]);
  });

  it("what a trusted cmdline or LUKS token may still supply is a note, not an error", () => {
    const notes = checkUnlockConfig(
      cfg((c) => {
        c.kbs = { ca_file: caFile };
        delete c.resource;
        c.unlock = { trust_cmdline: true, volumes: [] };
      }),
    );
    expect(notes.join("\n")).toMatch(/unlock\.volumes is not set: it must come from the kernel command line/);
    expect(notes.join("\n")).toMatch(/kbs\.endpoints is not set/);
    // a token that may not name any resource cannot supply one
    expect(() =>
      checkUnlockConfig(
        cfg((c) => {
          delete c.resource;
          c.unlock.luks_token = { trust: true };
        }),
      ),
    ).toThrow(/no KBS resource/);
    expect(
      checkUnlockConfig(
        cfg((c) => {
          delete c.resource;
          c.unlock.luks_token = { trust: true, allowed_resources: ["default/key/*"] };
        }),
      ),
    ).toEqual([expect.stringMatching(/resource of volume root is not set: it must come from the LUKS2 token/)]);
  });
});

describe("config --files", () => {
  it("lists every file the config names, and --files-root reads them under the initramfs tree", () => {
    const c = cfg((c) => {
      c.kbs.ca_file = "/etc/cvm-unlock/kbs-ca.pem";
      c.kbs.init_data_file = "/etc/cvm-unlock/init-data.toml";
      c.unlock.luks_token = { trust: true, allowed_ca_files: ["/etc/cvm-unlock/a.pem", "/etc/cvm-unlock/b.pem"] };
    });
    expect(configFiles(c)).toEqual([
      { key: "kbs.ca_file", path: "/etc/cvm-unlock/kbs-ca.pem" },
      { key: "kbs.init_data_file", path: "/etc/cvm-unlock/init-data.toml" },
      { key: "unlock.luks_token.allowed_ca_files", path: "/etc/cvm-unlock/a.pem" },
      { key: "unlock.luks_token.allowed_ca_files", path: "/etc/cvm-unlock/b.pem" },
    ]);
    const under = filesUnder(c, "/build/initrd");
    expect(configFiles(under).map((f) => f.path)).toEqual([
      "/build/initrd/etc/cvm-unlock/kbs-ca.pem",
      "/build/initrd/etc/cvm-unlock/init-data.toml",
      "/build/initrd/etc/cvm-unlock/a.pem",
      "/build/initrd/etc/cvm-unlock/b.pem",
    ]);
    expect(c.kbs.ca_file).toBe("/etc/cvm-unlock/kbs-ca.pem"); // not modified in place
  });

  it("refuses a relative path or one the module's KEY<TAB>PATH lines cannot carry", () => {
    for (const p of ["kbs-ca.pem", "/etc/a\tb.pem", "/etc/a\nb.pem"])
      expect(() => configFiles(cfg((c) => (c.kbs.ca_file = p))), JSON.stringify(p)).toThrow(/must be an absolute path/);
  });

  it("every path-valued key of the schema is either installed or a boot-time path (a new one needs a decision)", () => {
    const pathKeys: string[] = [];
    const walk = (shape: Record<string, { schema: Schema<unknown> }>, prefix: string) => {
      for (const [k, f] of Object.entries(shape)) {
        const p = prefix ? `${prefix}.${k}` : k;
        let s = f.schema as Schema<unknown> & { shape?: never; item?: Schema<unknown> & { shape?: never } };
        if (s.item) s = s.item as typeof s;
        if (s.shape) walk(s.shape, p);
        else if (/^(array of )?(path|path or name|TPM spec)$/.test(s.describe)) pathKeys.push(p);
      }
    };
    walk(configSchema.shape as never, "");
    expect(pathKeys.sort()).toEqual([...INSTALLED_FILE_KEYS, ...RUNTIME_PATH_KEYS].sort());
  });
});

describe("config --check --crypttab (mode B) refuses what serve-keys refuses", () => {
  const SOCK = "/run/cvm-unlock/key.sock";
  const crypttab = (text: string) => {
    const f = path.join(tmp, `crypttab-${Math.random().toString(16).slice(2)}`);
    fs.writeFileSync(f, text);
    return { crypttab: f, socket: SOCK };
  };
  const noVolumes = (c: J) => (c.unlock = {});

  it("takes the volumes from the crypttab entries that use the key socket", () => {
    const ct = crypttab(`root UUID=6d1e7c52-2b4f-4d3e-9a51-0c3b8f2e7a10 ${SOCK} luks,headless=true\n`);
    expect(checkUnlockConfig(cfg(noVolumes), ct)).toEqual([]);
  });

  it.each<[string, string, (c: J) => void, RegExp]>([
    ["no entry uses the socket", "swap /dev/vdc /dev/urandom swap\n", noVolumes, /has no volume whose key file is/],
    ["an entry without headless=true", `root /dev/vda2 ${SOCK} luks\n`, noVolumes, /headless=true is missing/],
    [
      "a configured volume crypttab does not serve",
      `var /dev/vdb ${SOCK} luks,headless=true\n`,
      () => {},
      /unlock.volumes names root/,
    ],
    [
      "no resource for a crypttab volume",
      `root /dev/vda2 ${SOCK} headless=true\n`,
      (c) => (noVolumes(c), delete c.resource),
      /volume root: no KBS resource/,
    ],
  ])("refuses %s", (_, text, over, re) => {
    expect(() => checkUnlockConfig(cfg(over), crypttab(text))).toThrow(re);
  });
});
