// The KBS-released dm-verity root with the compiled binary (docs/VERITY.md): `verity format` on image
// files, then `unlock --test-only` (veritysetup verify in user space, no device-mapper) against the
// test KBS with a stand-in /sys whose partitions are those image files; the LUKS2 /var in the same
// attested session; verify-root on a stand-in verity mapping. The host and the KBS attack each check.
import { execFileSync } from "node:child_process";
import * as crypto from "node:crypto";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { EXIT_CODES } from "../../platform/util/errors.ts";
import { ensureBinary, runCli, type RunResult } from "../helpers/binary.ts";
import { createPki, type Pki } from "../helpers/pki.ts";
import { toolsAvailable } from "../helpers/tools.ts";
import { startTestKbs, type TestKbs } from "../kbs/server.ts";
import { cryptsetupAvailable, makeLuksImage, type LuksImage } from "../unit/unlock/luks-image.ts";

const have = cryptsetupAvailable() && toolsAvailable("veritysetup", "openssl", "mke2fs");
const RES = "default/verity/root";
let work: string;
let pki: Pki;
let kbs: TestKbs;
let varImg: LuksImage;
let root: string;
let signed: VerityDoc;
let signerPem: string;

interface VerityDoc {
  v: 1;
  volumes: {
    name: string;
    roothash: string;
    data?: string;
    hash?: string;
    options: string[];
    signature_p7s_b64?: string;
  }[];
}

function openssl(args: string[]): void {
  execFileSync("openssl", args, { stdio: "ignore" });
}

/** A stand-in /sys + /dev: partition NAME (label LABEL) is the image file FILE. */
function partition(name: string, label: string, file: string): void {
  const sys = path.join(root, "sys/class/block", name);
  fs.mkdirSync(sys, { recursive: true });
  fs.writeFileSync(path.join(sys, "uevent"), `DEVNAME=${name}\nDEVTYPE=partition\nPARTN=1\nPARTNAME=${label}\n`);
  fs.mkdirSync(path.join(root, "dev"), { recursive: true });
  fs.rmSync(path.join(root, "dev", name), { force: true });
  fs.symlinkSync(file, path.join(root, "dev", name));
}

function config(o: Record<string, unknown> = {}): string {
  const file = path.join(work, `config-${crypto.randomBytes(4).toString("hex")}.json`);
  const { verity, unlock, ...rest } = o as { verity?: object; unlock?: object };
  fs.writeFileSync(
    file,
    JSON.stringify({
      kbs: { endpoints: [kbs.url], ca_file: pki.caFile, request_timeout_s: 10 },
      platform: { tee: "sample", allow_sample: true },
      resource: "default/key/var",
      verity: { resource: RES, device_timeout_s: 1, ...verity },
      unlock: {
        volumes: [{ name: "var", partlabel: "var" }],
        device_timeout_s: 2,
        measure: { record_path: path.join(work, "run", "measurements.cbor") },
        ...unlock,
      },
      ...rest,
    }),
  );
  return file;
}

const unlock = (cfg: string): Promise<RunResult> =>
  runCli(["unlock", "--test-only", "--config", cfg, "--platform-root", root, "--log-format", "text"], {
    timeoutMs: 60_000,
  });

const serve = (d: VerityDoc) => kbs.setResource(RES, JSON.stringify(d));

beforeAll(async () => {
  if (!have) return;
  ensureBinary();
  work = fs.mkdtempSync(path.join(os.tmpdir(), "verity-it-"));
  pki = createPki({ dir: path.join(work, "pki") });
  root = path.join(work, "root");
  varImg = makeLuksImage(work, "var.img");
  // a small ext4 data image and its hash tree, made by our own `verity format`, signed
  const data = path.join(work, "data.img");
  fs.writeFileSync(data, Buffer.alloc(4 * 1024 * 1024));
  execFileSync("mke2fs", ["-q", "-t", "ext4", "-b", "4096", data]);
  // the owner's signer, and another key with the same subject (the host's forgery)
  for (const who of ["signer", "other"]) {
    const [key, pem] = [path.join(work, `${who}.key`), path.join(work, `${who}.pem`)];
    const newKey = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "2"];
    openssl(["req", "-x509", ...newKey, "-subj", "/CN=verity signer", "-keyout", key, "-out", pem]);
  }
  signerPem = path.join(work, "signer.pem");
  const out = path.join(work, "verity.json");
  const f = await runCli([
    "verity",
    "format",
    data,
    path.join(work, "hash.img"),
    "--data",
    "PARTLABEL=root-data",
    "--hash-device",
    "PARTLABEL=root-hash",
    "--option",
    "panic-on-corruption",
    "--sign-key",
    path.join(work, "signer.key"),
    "--sign-cert",
    signerPem,
    "--out",
    out,
  ]);
  expect(f.code, f.stderr).toBe(0);
  signed = JSON.parse(fs.readFileSync(out, "utf8"));
  partition("vda1", "root-data", data);
  partition("vda2", "root-hash", path.join(work, "hash.img"));
  partition("vda3", "var", varImg.file);
  kbs = await startTestKbs({
    tls: pki.tls,
    resources: { "default/key/var": varImg.key, [RES]: JSON.stringify(signed) },
  });
}, 120_000);

afterAll(async () => {
  await kbs?.close();
  if (work) fs.rmSync(work, { recursive: true, force: true });
});

describe.skipIf(!have)("verity (binary, stand-in /sys, image files)", () => {
  it("verity format prints the resource: the root hash, the partitions, the options and a signature", () => {
    const v = signed.volumes[0]!;
    expect(v).toMatchObject({ name: "root", data: "PARTLABEL=root-data", hash: "PARTLABEL=root-hash" });
    expect(v.roothash).toMatch(/^[0-9a-f]{64}$/);
    expect(v.options).toEqual(["panic-on-corruption"]);
    expect(v.signature_p7s_b64).toMatch(/^MI/);
  });

  it("verity format refuses a weakening option as a usage error naming the flag, before veritysetup runs", async () => {
    const hash = path.join(work, "never.hash");
    const r = await runCli(["verity", "format", path.join(work, "data.img"), hash, "--option", "ignore-corruption"]);
    expect(r.code).toBe(EXIT_CODES.usage);
    expect(r.stderr).toMatch(/ignore-corruption lets corrupted.*--option/);
    expect(fs.existsSync(hash)).toBe(false);
  });

  it("the released, signed hash verifies the root; /var is unlocked in the same session (one handshake)", async () => {
    serve(signed);
    kbs.resetStats();
    const r = await unlock(config({ verity: { signer_cert: signerPem } }));
    expect(r.code, r.stderr).toBe(0);
    const out = r.stdout.toString();
    expect(out).toMatch(
      new RegExp(
        `^root: verity verified \\(data .*vda1, hash .*vda2, root hash ${signed.volumes[0]!.roothash}\\)`,
        "m",
      ),
    );
    expect(out).toMatch(/^var: key-verified/m);
    expect(kbs.stats.requests.auth).toBe(1);
    expect(kbs.stats.attested).toBe(1);
    expect(kbs.stats.released).toBe(2);
  });

  describe("one attested session per run (two LUKS volumes, the SSH host identity and the verity root)", () => {
    let data: LuksImage;
    const sessionConfig = (): string =>
      config({
        verity: { signer_cert: signerPem },
        identity: { ssh: { resource: "default/ssh/host" } },
        unlock: {
          volumes: [
            { name: "var", partlabel: "var" },
            { name: "data", partlabel: "data", resource: "default/key/data" },
          ],
        },
      });
    beforeAll(() => {
      if (!have) return;
      data = makeLuksImage(work, "data.luks.img");
      partition("vda4", "data", data.file);
      kbs.setResource("default/key/data", data.key);
      kbs.setResource(
        "default/ssh/host",
        fs.readFileSync(path.join(import.meta.dirname, "../fixtures/ssh/host_ed25519")),
      );
    });

    it("exactly one /kbs/v0/auth and one attestation for all four resources", async () => {
      serve(signed);
      kbs.resetStats();
      const r = await unlock(sessionConfig());
      expect(r.code, r.stderr).toBe(0);
      expect(r.stdout.toString()).toMatch(/^var: key-verified/m);
      expect(r.stdout.toString()).toMatch(/^data: key-verified/m);
      expect(kbs.stats.requests.auth).toBe(1);
      expect(kbs.stats.requests.attest).toBe(1);
      expect(kbs.stats.attested).toBe(1);
      expect(kbs.stats.released).toBe(4); // verity, SSH host key, two volume keys
    });

    it("a LUKS header the host rewrote (cipher_null): prepare() made no KBS request before the check failed", async () => {
      const evil = path.join(work, `null-${crypto.randomBytes(3).toString("hex")}.img`);
      const b = fs.readFileSync(data.file);
      const from = Buffer.from('"encryption":"aes-xts-plain64"');
      const to = Buffer.from('"encryption":"cipher_null-ecb0"');
      for (let at = b.indexOf(from); at >= 0; at = b.indexOf(from, at + 1)) to.copy(b, at);
      fs.writeFileSync(evil, b);
      partition("vda4", "data", evil);
      try {
        // the bad volume first, with the SSH identity, a second volume and the verity root configured: nothing may reach the KBS
        const c = JSON.parse(fs.readFileSync(sessionConfig(), "utf8"));
        c.unlock.volumes.reverse();
        const file = path.join(work, `null-first-${crypto.randomBytes(3).toString("hex")}.json`);
        fs.writeFileSync(file, JSON.stringify(c));
        kbs.resetStats();
        const r = await unlock(file);
        expect(r.code, r.stderr).toBe(EXIT_CODES.volume);
        expect(r.stderr).toMatch(/vda4: LUKS2 header: .*checksum does not match/);
        expect(kbs.stats.requests).toMatchObject({ auth: 0, attest: 0, resource: 0 });
      } finally {
        partition("vda4", "data", data.file);
      }
    });
  });

  it("host/KBS attacks on the signature: none, another key, a signature over another hash: refused before any device", async () => {
    const unsigned = structuredClone(signed);
    delete unsigned.volumes[0]!.signature_p7s_b64;
    const otherSig = structuredClone(signed);
    const sig = execFileSync(
      "openssl",
      ["smime", "-sign", "-binary", "-noattr", "-nocerts", "-outform", "der"].concat([
        "-signer",
        path.join(work, "other.pem"),
        "-inkey",
        path.join(work, "other.key"),
      ]),
      { input: signed.volumes[0]!.roothash },
    );
    otherSig.volumes[0]!.signature_p7s_b64 = sig.toString("base64");
    const swapped = structuredClone(signed);
    swapped.volumes[0]!.roothash = "ab".repeat(32); // the owner's signature, but not over this hash
    for (const [doc, why] of [
      [unsigned, /carries no signature_p7s_b64/],
      [otherSig, /does not verify with verity\.signer_cert/],
      [swapped, /does not verify with verity\.signer_cert/],
    ] as const) {
      serve(doc);
      kbs.resetStats();
      const r = await unlock(config({ verity: { signer_cert: signerPem } }));
      expect(r.code, r.stderr).toBe(EXIT_CODES.volume);
      expect(r.stderr).toMatch(why);
      expect(r.stderr).not.toMatch(/veritysetup/);
      expect(kbs.stats.released).toBe(1); // the verity resource only: /var's key never left the KBS
    }
  });

  it("a wrong hash (unsigned config) or a hash partition from another image is refused before veritysetup", async () => {
    const wrong = structuredClone(signed);
    delete wrong.volumes[0]!.signature_p7s_b64;
    wrong.volumes[0]!.roothash = crypto.randomBytes(32).toString("hex");
    serve(wrong);
    const r = await unlock(config());
    expect(r.code).toBe(EXIT_CODES.volume);
    expect(r.stderr).toMatch(/not the hash of the hash tree/);
    // the host swaps in a hash partition it built itself for its own data
    const forged = path.join(work, "forged-hash.img");
    execFileSync("veritysetup", ["format", path.join(work, "var.img"), forged], { stdio: "ignore" });
    partition("vda2", "root-hash", forged);
    try {
      serve(signed);
      const r2 = await unlock(config({ verity: { signer_cert: signerPem } }));
      expect(r2.code).toBe(EXIT_CODES.volume);
      expect(r2.stderr).toMatch(/not the hash of the hash tree/);
    } finally {
      partition("vda2", "root-hash", path.join(work, "hash.img"));
    }
  });

  it("a second partition with the data partition's label (a disk the host adds) is refused, not guessed", async () => {
    const other = path.join(work, "other-data.img");
    fs.copyFileSync(path.join(work, "data.img"), other);
    partition("vdb1", "root-data", other);
    try {
      serve(signed);
      const r = await unlock(config({ verity: { signer_cert: signerPem } }));
      expect(r.code).toBe(EXIT_CODES.volume);
      expect(r.stderr).toMatch(/partition label "root-data" is on 2 partitions/);
      expect(r.stderr).not.toMatch(/veritysetup verify/);
    } finally {
      fs.rmSync(path.join(root, "sys/class/block/vdb1"), { recursive: true, force: true });
      fs.rmSync(path.join(root, "dev/vdb1"), { force: true });
    }
  });

  it("a data block flipped after provisioning fails veritysetup verify (no silent success)", async () => {
    const copy = path.join(work, "data-tampered.img");
    fs.copyFileSync(path.join(work, "data.img"), copy);
    const fd = fs.openSync(copy, "r+");
    fs.writeSync(fd, Buffer.from([0x5a]), 0, 1, 2 * 4096 + 17);
    fs.closeSync(fd);
    partition("vda1", "root-data", copy);
    try {
      serve(signed);
      const r = await unlock(config({ verity: { signer_cert: signerPem } }));
      expect(r.code).toBe(EXIT_CODES.volume);
      expect(r.stderr).toMatch(/veritysetup verify failed/);
    } finally {
      partition("vda1", "root-data", path.join(work, "data.img"));
    }
  });

  it("refuses weakening options and a roothash= on the kernel command line before contacting the KBS", async () => {
    const weak = structuredClone(signed);
    weak.volumes[0]!.options = ["ignore-corruption"];
    serve(weak);
    const r = await unlock(config({ verity: { signer_cert: signerPem } }));
    expect(r.code).toBe(EXIT_CODES.volume);
    expect(r.stderr).toMatch(/ignore-corruption lets corrupted or stale blocks through: refused/);

    serve(signed);
    fs.mkdirSync(path.join(root, "proc"), { recursive: true });
    fs.writeFileSync(path.join(root, "proc/cmdline"), `console=ttyS0 roothash=${"0".repeat(64)} rw\n`);
    try {
      kbs.resetStats();
      const c = await unlock(config());
      expect(c.code).toBe(EXIT_CODES["unsafe-cmdline"]);
      expect(c.stderr).toMatch(/sets a verity root itself \(roothash\)/);
      expect(kbs.stats.requests.auth).toBe(0);
      // systemd reads "-" as "_" and, in the initramfs, an rd. prefix: the same parameters
      for (const p of ["rd.roothash=" + "1".repeat(64), "systemd.verity-root-data=PARTLABEL=x", "rd.usrhash=ab"]) {
        fs.writeFileSync(path.join(root, "proc/cmdline"), `quiet ${p}\n`);
        const v = await unlock(config());
        expect(v.code, p).toBe(EXIT_CODES["unsafe-cmdline"]);
        expect(v.stderr).toContain(`(${p.split("=")[0]})`);
      }
      expect(kbs.stats.requests.auth).toBe(0);
    } finally {
      fs.rmSync(path.join(root, "proc/cmdline"));
    }
  });

  it("inside an initramfs without the gpt-auto mask the agent refuses (config error) before contacting the KBS", async () => {
    fs.mkdirSync(path.join(root, "etc/systemd/system-generators"), { recursive: true });
    fs.writeFileSync(path.join(root, "etc/initrd-release"), "");
    try {
      kbs.resetStats();
      const r = await unlock(config());
      expect(r.code).toBe(EXIT_CODES.config);
      expect(r.stderr).toMatch(/systemd-gpt-auto-generator is not masked/);
      expect(kbs.stats.requests.auth).toBe(0);
      fs.symlinkSync("/dev/null", path.join(root, "etc/systemd/system-generators/systemd-gpt-auto-generator"));
      const ok = await unlock(config());
      expect(ok.code, ok.stderr).toBe(0);
    } finally {
      fs.rmSync(path.join(root, "etc"), { recursive: true, force: true });
    }
  });

  it("a verity volume named like a LUKS2 volume, and a signer file that is not a certificate, are config errors", async () => {
    serve(signed);
    const clash = await unlock(config({ unlock: { volumes: [{ name: "root", partlabel: "var" }] } }));
    expect(clash.code).toBe(EXIT_CODES.config);
    expect(clash.stderr).toMatch(/has the name of a LUKS2 volume/);
    const notPem = path.join(work, "not.pem");
    fs.writeFileSync(notPem, "hello\n");
    const bad = await runCli(["config", "--check", "--config", config({ verity: { signer_cert: notPem } })]);
    expect(bad.code).toBe(EXIT_CODES.config);
    const good = await runCli(["config", "--check", "--config", config({ verity: { signer_cert: signerPem } })]);
    expect(good.code, good.stderr).toBe(0);
    expect(good.stdout.toString()).toMatch(/^verity: root hash from KBS resource default\/verity\/root, signed by /m);
  });
});

describe.skipIf(!have)("verify-root with a verity root (stand-in /proc, /sys and dmsetup)", () => {
  it("accepts the mapping opened with the recorded hash; refuses another hash, a weakened table, an unrecorded verity device", async () => {
    const run = path.join(work, "run-vr");
    fs.mkdirSync(run, { recursive: true });
    const hash = signed.volumes[0]!.roothash;
    fs.writeFileSync(
      path.join(run, "verity.json"),
      JSON.stringify({ version: 1, volumes: [{ name: "root", roothash: hash }] }),
    );
    const table = path.join(work, "table.txt");
    const dmsetup = path.join(work, "dmsetup");
    fs.writeFileSync(dmsetup, `#!/bin/sh\n[ "$1" = table ] && [ "$2" = root ] && cat ${table}\n`, { mode: 0o755 });
    const line = (h: string, opts = "1 panic_on_corruption") =>
      `0 8192 verity 1 254:1 254:2 4096 4096 1024 1 sha256 ${h} 00 ${opts}\n`;
    const vroot = fs.mkdtempSync(path.join(work, "vroot-"));
    fs.mkdirSync(path.join(vroot, "proc/self"), { recursive: true });
    fs.mkdirSync(path.join(vroot, "sys/dev/block/253:0/dm"), { recursive: true });
    fs.writeFileSync(path.join(vroot, "sys/dev/block/253:0/dm/name"), "root");
    fs.writeFileSync(path.join(vroot, "sys/dev/block/253:0/dm/uuid"), `CRYPT-VERITY-${"a".repeat(32)}-root`);
    fs.writeFileSync(
      path.join(vroot, "proc/self/mountinfo"),
      "1 0 8:1 / / rw - ext4 /dev/vda1 rw\n40 1 253:0 / /sysroot ro - ext4 /dev/mapper/root ro\n",
    );
    const cfg = config({ unlock: { dmsetup, measure: { record_path: path.join(run, "measurements.cbor") } } });
    const verify = () => runCli(["verify-root", "--config", cfg, "--platform-root", vroot]);
    fs.writeFileSync(table, line(hash));
    const ok = await verify();
    expect(ok.code, ok.stderr).toBe(0);
    expect(ok.stdout.toString()).toMatch(/^\/sysroot: on dm-verity root \(CRYPT-VERITY-a+-root\), ext4: OK/);
    fs.writeFileSync(table, line("cd".repeat(32)));
    const other = await verify();
    expect(other.code).toBe(EXIT_CODES.volume);
    expect(other.stderr).toMatch(/is not the one cvm-unlock opened it with/);
    fs.writeFileSync(table, line(hash, "2 panic_on_corruption ignore_zero_blocks"));
    expect((await verify()).code).toBe(EXIT_CODES.volume);
    // no record of a verity volume: a verity root the host set up itself is refused
    fs.rmSync(path.join(run, "verity.json"));
    fs.writeFileSync(table, line(hash));
    const unrecorded = await verify();
    expect(unrecorded.code).toBe(EXIT_CODES.volume);
    expect(unrecorded.stderr).toMatch(/which cvm-unlock did not open with a root hash from the KBS/);
  });
});

describe.skipIf(!have)("bind --verity: upload the resource through trustee's admin API", () => {
  it("uploads a valid resource (the guest then gets exactly it); refuses a resource the guest would refuse, before any request", async () => {
    const admin = await startTestKbs({ tls: pki.tls, admin: { mode: "InsecureAllowAll" } });
    try {
      const file = path.join(work, "verity.json");
      const bind = (f: string) =>
        runCli([
          "bind",
          "--verity",
          f,
          "--kbs",
          admin.url,
          "--resource",
          "default/verity/next",
          "--ca",
          pki.caFile,
          "--admin-anonymous",
        ]);
      const r = await bind(file);
      expect(r.code, r.stderr).toBe(0);
      expect(r.stdout.toString()).toMatch(/resource default\/verity\/next stored/);
      expect(r.stdout.toString()).toMatch(/verity root: root hash [0-9a-f]{64} \(signed\) at default\/verity\/next/);
      expect(Buffer.from(admin.resources.get("default/verity/next")!).toString()).toBe(fs.readFileSync(file, "utf8"));
      const weak = structuredClone(signed);
      weak.volumes[0]!.options = ["check-at-most-once"];
      const weakFile = path.join(work, "weak.json");
      fs.writeFileSync(weakFile, JSON.stringify(weak));
      admin.resetStats();
      const refused = await bind(weakFile);
      expect(refused.code).toBe(EXIT_CODES.volume);
      expect(refused.stderr).toMatch(/check-at-most-once lets corrupted or stale blocks through/);
      expect(Buffer.from(admin.resources.get("default/verity/next")!).toString()).toBe(fs.readFileSync(file, "utf8"));
    } finally {
      await admin.close();
    }
  });
});
