// The dracut module's build-time calls, through the binary: `config --files` (what to install)
// and `config --check --files-root DIR` (would unlock accept this config, with the files as
// installed in the initramfs tree?). Exit 3 fails the initramfs build.
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ensureBinary, runCli } from "../helpers/binary.ts";

let work: string;
const CA = fs.readFileSync(path.join(import.meta.dirname, "../fixtures/snp/milan-ask-ark.pem"), "utf8");

beforeAll(() => {
  ensureBinary();
  work = fs.mkdtempSync(path.join(os.tmpdir(), "config-check-cli-"));
});
afterAll(() => fs.rmSync(work, { recursive: true, force: true }));

const write = (name: string, obj: unknown) => {
  const p = path.join(work, name);
  fs.writeFileSync(p, JSON.stringify(obj));
  return p;
};

const GOOD = {
  kbs: { endpoints: ["https://kbs.example:8080"], ca_file: "/etc/cvm-unlock/kbs-ca.pem" },
  resource: "default/key/root",
  unlock: {
    volumes: [{ name: "root", gpt_auto_root: true }],
    luks_token: { trust: true, allowed_ca_files: ["/etc/cvm-unlock/other-ca.pem"] },
  },
};

describe("config --check / --files (binary)", () => {
  it("--files lists KEY<TAB>PATH for every file to install", async () => {
    const r = await runCli(["config", "--files", "--config", write("good.json", GOOD)]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout.toString()).toBe(
      "kbs.ca_file\t/etc/cvm-unlock/kbs-ca.pem\nunlock.luks_token.allowed_ca_files\t/etc/cvm-unlock/other-ca.pem\n",
    );
  });

  it("--check --files-root: passes once every file is in the tree, fails naming the one missing", async () => {
    const tree = path.join(work, "initrd");
    fs.mkdirSync(path.join(tree, "etc/cvm-unlock"), { recursive: true });
    fs.writeFileSync(path.join(tree, "etc/cvm-unlock/kbs-ca.pem"), CA);
    const cfg = write("good.json", GOOD);
    const missing = await runCli(["config", "--check", "--config", cfg, "--files-root", tree]);
    expect(missing.code).toBe(3);
    expect(missing.stderr).toMatch(/other-ca\.pem/);
    fs.writeFileSync(path.join(tree, "etc/cvm-unlock/other-ca.pem"), CA);
    const ok = await runCli(["config", "--check", "--config", cfg, "--files-root", tree]);
    expect(ok.code, ok.stderr).toBe(0);
    expect(ok.stdout.toString()).toMatch(/^config OK: unlock would accept it\n$/);
  });

  it("refuses what config --explain accepted and unlock would refuse at boot (exit 3)", async () => {
    for (const [raw, message] of [
      [{}, /no volume to unlock/],
      [{ ...GOOD, platform: { tee: "sample" } }, /tee 'sample' is insecure/],
      [{ ...GOOD, kbs: { ...GOOD.kbs, endpoints: ["http://kbs.example"] } }, /plain http:\/\//],
      [{ ...GOOD, kbs: { ...GOOD.kbs, ca_file: "/etc/passwd" } }, /\/etc\/passwd\) holds no PEM certificate/],
    ] as const) {
      const cfg = write("bad.json", raw);
      expect((await runCli(["config", "--explain", "--config", cfg])).code).toBe(0);
      const r = await runCli(["config", "--check", "--config", cfg]);
      expect(r.code, JSON.stringify(raw)).toBe(3);
      expect(r.stderr).toMatch(message);
    }
  });

  it("takes exactly one mode", async () => {
    const cfg = write("good.json", GOOD);
    expect((await runCli(["config", "--check", "--files", "--config", cfg])).code).toBe(2);
    expect((await runCli(["config", "--files", "--files-root", work, "--config", cfg])).code).toBe(2);
  });
});
