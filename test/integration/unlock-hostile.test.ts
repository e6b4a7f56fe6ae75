// The host as attacker, against the compiled binary, real cryptsetup on image files and the
// trustee-faithful test KBS (which counts requests): a rewritten LUKS2 header (checksums
// recomputed), a block backend that answers differently once the agent has checked the header,
// an evil KBS document, and a live dm-crypt table that differs from the verified header. Each case
// fails on the code before issue 10. This host has no device-mapper, so the real-open cases use a
// stand-in cryptsetup/dmsetup pair (the comparison logic itself runs unmodified in the binary).
import * as crypto from "node:crypto";
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { luks2DigestFingerprint, luks2FingerprintV2 } from "../../agent/unlock/fingerprint.ts";
import { readLuks2Header } from "../../platform/luks/volume-io.ts";
import { parseLuks2Layout } from "../../platform/luks/luks2-layout.ts";
import { EXIT_CODES } from "../../platform/util/errors.ts";
import { ensureBinary, runCli, type RunResult } from "../helpers/binary.ts";
import { createPki, type Pki } from "../helpers/pki.ts";
import { startTestKbs, type TestKbs } from "../kbs/server.ts";
import {
  CRYPTSETUP,
  cryptsetupAvailable,
  makeLuksImage,
  rewriteLuks2Json,
  type LuksImage,
} from "../unit/unlock/luks-image.ts";

const have = cryptsetupAvailable();
let work: string;
let state: string;
let pki: Pki;
let kbs: TestKbs;
let A: LuksImage;
let B: LuksImage;
let fpA: string;

const doc = (key: Buffer, pins: Record<string, string>) =>
  JSON.stringify({ cvm_unlock_key: 1, key: key.toString("base64"), pins });

beforeAll(async () => {
  if (!have) return;
  ensureBinary();
  work = fs.mkdtempSync(path.join(os.tmpdir(), "unlock-hostile-"));
  state = path.join(work, "run");
  pki = createPki({ dir: path.join(work, "pki") });
  A = makeLuksImage(work, "a.img");
  B = makeLuksImage(work, "b.img");
  fpA = luks2FingerprintV2(readLuks2Header(A.file));
  kbs = await startTestKbs({
    tls: pki.tls,
    resources: {
      "default/key/a": A.key,
      "default/key/a-v2": doc(A.key, { luks2_fingerprint_v2: fpA }),
    },
  });
});
afterAll(async () => {
  await kbs?.close();
  if (work) fs.rmSync(work, { recursive: true, force: true });
});

function config(unlock: Record<string, unknown> = {}): string {
  const file = path.join(work, `config-${crypto.randomBytes(4).toString("hex")}.json`);
  fs.writeFileSync(
    file,
    JSON.stringify({
      kbs: { ca_file: pki.caFile, endpoints: [kbs.url], request_timeout_s: 10 },
      platform: { tee: "sample", allow_sample: true },
      unlock: {
        device_timeout_s: 2,
        measure: { tpm: "off", rtmr_mode: "off", record_path: path.join(state, "measurements.cbor") },
        ...unlock,
      },
    }),
  );
  return file;
}

const kbsRequests = () => kbs.stats.requests.auth + kbs.stats.requests.attest + kbs.stats.requests.resource;

function unlock(cfg: string, extra: string[], testOnly = true): Promise<RunResult> {
  return runCli(["unlock", ...(testOnly ? ["--test-only"] : []), "--config", cfg, "--log-format", "text", ...extra], {
    timeoutMs: 60_000,
  });
}

function copyOf(img: LuksImage, name: string): string {
  const f = path.join(work, name);
  fs.copyFileSync(img.file, f);
  return f;
}

function executable(name: string, text: string): string {
  const f = path.join(work, name);
  fs.writeFileSync(f, text, { mode: 0o755 });
  return f;
}

const leftoverCopies = () => (fs.existsSync(state) ? fs.readdirSync(state).filter((f) => f.startsWith("header-")) : []);

describe.skipIf(!have)("hostile host: rewritten LUKS2 header (binary, real cryptsetup)", () => {
  const rewrites: [string, (j: any) => void, RegExp][] = [
    ["segment cipher_null-ecb", (j) => (j.segments["0"].encryption = "cipher_null-ecb"), /segments\.0\.encryption/],
    ["segment aes-ecb", (j) => (j.segments["0"].encryption = "aes-ecb"), /segments\.0\.encryption/],
    ["keyslot area aes-ecb", (j) => (j.keyslots["0"].area.encryption = "aes-ecb"), /keyslots\.0\.area\.encryption/],
    ["data offset 0", (j) => (j.segments["0"].offset = "0"), /segments\.0\.offset/],
  ];
  for (const [name, edit, field] of rewrites)
    it(`${name}: exit 15 naming the field, the KBS is never contacted`, async () => {
      const f = copyOf(A, `rw-${name.replace(/\W+/g, "-")}.img`);
      rewriteLuks2Json(f, edit);
      // The rewritten header is one cryptsetup accepts: only the agent's allow-list stands in the way.
      expect(spawnSync(CRYPTSETUP!, ["isLuks", f]).status).toBe(0);
      kbs.resetStats();
      const r = await unlock(config(), ["--device", f, "--resource", "default/key/a"]);
      expect(r.code, r.stderr).toBe(EXIT_CODES.volume);
      expect(r.stderr).toMatch(field);
      expect(r.stderr).toMatch(/refusing before contacting the KBS|LUKS2 JSON metadata/);
      expect(kbsRequests()).toBe(0);
    });

  it("the cipher_null rewrite really is the attack: cryptsetup accepts the real key for it", () => {
    const f = copyOf(A, "null-proof.img");
    rewriteLuks2Json(f, (j) => (j.segments["0"].encryption = "cipher_null-ecb"));
    const r = spawnSync(CRYPTSETUP!, ["open", "--test-passphrase", "--type", "luks2", "--key-file=-", f], {
      input: A.key,
    });
    expect(r.status).toBe(0);
  });

  it("a digests member nested deeper than the JCS limit: exit 15 before any KBS request (not internal)", async () => {
    const f = copyOf(A, "deep.img");
    let deep: unknown = "x";
    for (let i = 0; i < 80; i++) deep = [deep];
    rewriteLuks2Json(f, (j) => (j.digests["0"].salt = deep));
    kbs.resetStats();
    const cfg = config({
      volumes: [
        { name: "root", device: f, pins: { luks2_digest_sha256: luks2DigestFingerprint(readLuks2Header(A.file)) } },
      ],
    });
    const r = await unlock(cfg, ["--resource", "default/key/a"]);
    expect(r.code, r.stderr).toBe(EXIT_CODES.volume);
    expect(r.stderr).toMatch(/digests\.0\.salt/);
    expect(kbsRequests()).toBe(0);
  });
});

describe.skipIf(!have)("hostile host: pins", () => {
  it("a moved data segment passes the allow-list but not a luks2_fingerprint_v2 pin (checked before the fetch)", async () => {
    const f = copyOf(A, "moved.img");
    rewriteLuks2Json(f, (j) => (j.segments["0"].offset = "16781312"));
    kbs.resetStats();
    const r = await unlock(config({ volumes: [{ name: "root", device: f, pins: { luks2_fingerprint_v2: fpA } }] }), [
      "--resource",
      "default/key/a",
    ]);
    expect(r.code, r.stderr).toBe(EXIT_CODES.volume);
    expect(r.stderr).toMatch(/fingerprint v2 [0-9a-f]{64} does not match the pin .* from the trusted config/);
    expect(kbsRequests()).toBe(0);
  });

  it("trusted-config pins are checked before the key is fetched (v2 and v1)", async () => {
    const clone = makeLuksImage(work, "clone.img", A.uuid); // same UUID, another volume key
    for (const pins of [
      { luks2_fingerprint_v2: fpA },
      { luks2_digest_sha256: luks2DigestFingerprint(readLuks2Header(A.file)) },
    ]) {
      kbs.resetStats();
      const r = await unlock(config({ volumes: [{ name: "root", uuid: A.uuid, device: clone.file, pins }] }), [
        "--resource",
        "default/key/a",
      ]);
      expect(r.code, r.stderr).toBe(EXIT_CODES.volume);
      expect(r.stderr).toMatch(/does not match the pin .* from the trusted config/);
      expect(kbsRequests()).toBe(0);
    }
  });

  it("a key document pinned with luks2_fingerprint_v2 opens its volume; an evil KBS serving it for another is refused", async () => {
    const ok = await unlock(
      config({ volumes: [{ name: "root", device: A.file, pins: { luks2_fingerprint_v2: fpA } }] }),
      ["--resource", "default/key/a-v2"],
    );
    expect(ok.code, ok.stderr).toBe(0);
    expect(ok.stdout.toString()).toMatch(/^root: key-verified/);
    // The host points the guest at a volume whose segment it rewrote; the KBS document's v2 pin catches
    // what the v1 digest pin cannot (the digests are untouched). 512-byte sectors are inside the
    // default allow-list, so the pin, not the allow-list, is what refuses.
    const f = copyOf(A, "sector512.img");
    rewriteLuks2Json(f, (j) => (j.segments["0"].sector_size = 512));
    kbs.resetStats();
    const r = await unlock(config(), ["--device", f, "--resource", "default/key/a-v2"]);
    expect(r.code, r.stderr).toBe(EXIT_CODES.volume);
    expect(r.stderr).toMatch(/fingerprint v2 [0-9a-f]{64} does not match the pin [0-9a-f]{64} from the KBS key/);
    expect(kbs.stats.requests.resource).toBeGreaterThan(0);
  });
});

describe.skipIf(!have)("hostile host: the block device answers differently after the check (TOCTOU)", () => {
  it("cryptsetup gets the verified header bytes, not what the device says at open time", async () => {
    const device = copyOf(A, "swapping.img");
    const saved = path.join(work, "a-metadata.bin");
    // What the copy must hold: A's headers and keyslot areas at their offsets, zeros elsewhere.
    const layout = parseLuks2Layout(readLuks2Header(A.file));
    const image = fs.readFileSync(A.file);
    const expected = Buffer.alloc(Number(layout.metadataBytes));
    image.copy(expected, 0, 0, 2 * layout.hdrSize);
    for (const k of layout.keyslots)
      image.copy(expected, Number(k.area.offset), Number(k.area.offset), Number(k.area.offset + k.area.size));
    fs.writeFileSync(saved, expected);
    const log = path.join(work, "swap.log");
    // The attacker's block backend, as a cryptsetup wrapper: swap B's container in under the agent
    // just before cryptsetup reads the device, then let the real cryptsetup run.
    const wrapper = executable(
      "swapping-cryptsetup",
      `#!/bin/bash
cp -f ${B.file} ${device}
hdr=""; prev=""
for a in "$@"; do [ "$prev" = "--header" ] && hdr="$a"; prev="$a"; done
{ echo "args: $*"; [ -n "$hdr" ] && stat -c 'mode %a' "$hdr" && cmp -s "$hdr" ${saved} && echo "header copy identical"; } >> ${log}
exec ${CRYPTSETUP} "$@"
`,
    );
    const r = await unlock(config({ cryptsetup: wrapper }), ["--device", device, "--resource", "default/key/a"]);
    // Before issue 10 cryptsetup read B's header and A's key failed (exit 14).
    expect(r.code, r.stderr).toBe(0);
    const said = fs.readFileSync(log, "utf8");
    expect(said).toMatch(/--header \S+header-[0-9a-f]{16}\.luks2/);
    expect(said).toContain("mode 600");
    expect(said).toContain("header copy identical");
    expect(leftoverCopies()).toEqual([]);
  });
});

describe.skipIf(!have)("hostile host: the live dm-crypt table after a real open (stand-in cryptsetup/dmsetup)", () => {
  function realOpenSetup(table: string) {
    const device = copyOf(A, `open-${crypto.randomBytes(3).toString("hex")}.img`);
    const log = path.join(work, `open-${crypto.randomBytes(3).toString("hex")}.log`);
    const cryptsetup = executable(
      `cs-${crypto.randomBytes(3).toString("hex")}`,
      `#!/bin/bash
echo "cryptsetup $*" >> ${log}
[ "$1" = close ] && exit 0
cat > /dev/null  # the key, as cryptsetup reads it
exit 0
`,
    );
    const dmsetup = executable(
      `dm-${crypto.randomBytes(3).toString("hex")}`,
      `#!/bin/bash
echo "dmsetup $*" >> ${log}
[ "$*" = "table root" ] && printf '%s\\n' '${table}'
`,
    );
    const root = fs.mkdtempSync(path.join(work, "root-"));
    fs.mkdirSync(path.join(root, "proc"), { recursive: true });
    fs.writeFileSync(path.join(root, "proc/cmdline"), "quiet\n");
    fs.mkdirSync(path.join(root, "sys/dev/block/7:0/loop"), { recursive: true });
    fs.writeFileSync(path.join(root, "sys/dev/block/7:0/loop/backing_file"), device + "\n");
    return { device, log, cfg: config({ cryptsetup, dmsetup }), root };
  }
  const GOOD = "0 8192 crypt aes-xts-plain64 :64:logon:cryptsetup:x-d0 0 7:0 32768 2 sector_size:4096 iv_large_sectors";

  it("a live table equal to the verified header: opened", async () => {
    const s = realOpenSetup(GOOD);
    const r = await unlock(
      s.cfg,
      ["--device", s.device, "--resource", "default/key/a", "--platform-root", s.root],
      false,
    );
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout.toString()).toMatch(/^root: opened/);
    const said = fs.readFileSync(s.log, "utf8");
    expect(said).toMatch(/cryptsetup open --type luks2 --header \S+ --key-file=- \S+ root/);
    expect(said).toContain("dmsetup table root");
    expect(said).not.toMatch(/showkeys|close/);
  });

  for (const [name, table, re] of [
    ["cipher_null", GOOD.replace("aes-xts-plain64", "cipher_null-ecb"), /cipher is cipher_null-ecb/],
    ["another backing device", GOOD.replace("7:0", "7:1"), /backing device 7:1/],
    ["another offset", GOOD.replace(" 32768 ", " 0 "), /data offset/],
  ] as const)
    it(`a live table with ${name}: the mapping is closed again, exit 15`, async () => {
      const s = realOpenSetup(table);
      const r = await unlock(
        s.cfg,
        ["--device", s.device, "--resource", "default/key/a", "--platform-root", s.root],
        false,
      );
      expect(r.code, r.stderr).toBe(EXIT_CODES.volume);
      expect(r.stderr).toMatch(re);
      expect(r.stderr).toMatch(/mapping root closed: refusing/);
      expect(fs.readFileSync(s.log, "utf8")).toMatch(/cryptsetup close root/);
      expect(
        fs.existsSync(path.join(state, "opened.json")) &&
          fs.readFileSync(path.join(state, "opened.json"), "utf8").includes(s.device),
      ).toBe(false);
    });
});
