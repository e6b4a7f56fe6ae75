// Mode B through the compiled binary: `serve-keys` checks the crypttab volumes' headers, attests
// once to the test KBS, and serves each volume its key on an AF_UNIX socket to peers named the way
// systemd-cryptsetup names itself (real systemd-cryptsetup 252 from the host, which stops at the
// missing device-mapper after reading its key, and python3 clients that play the host).
// `verify-mapping` then compares a (stand-in) live dm table with the verified header.
import { execFile, execFileSync, spawnSync } from "node:child_process";
import { promisify } from "node:util";
import * as crypto from "node:crypto";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { EXIT_CODES } from "../../platform/util/errors.ts";
import { ensureBinary, runCli, type RunResult } from "../helpers/binary.ts";
import { createPki, type Pki } from "../helpers/pki.ts";
import { startTestKbs, type TestKbs } from "../kbs/server.ts";
import { cryptsetupAvailable, makeLuksImage, type LuksImage } from "../unit/unlock/luks-image.ts";

const SYSTEMD_CRYPTSETUP = ["/usr/lib/systemd/systemd-cryptsetup", "/lib/systemd/systemd-cryptsetup"].find((p) =>
  fs.existsSync(p),
);
const execFileAsync = promisify(execFile);
const have = cryptsetupAvailable() && spawnSync("python3", ["-c", "1"]).status === 0;

let work: string;
let pki: Pki;
let kbs: TestKbs;
let A: LuksImage;
let B: LuksImage;

beforeAll(async () => {
  if (!have) return;
  ensureBinary();
  work = fs.mkdtempSync(path.join(os.tmpdir(), "serve-keys-"));
  pki = createPki({ dir: path.join(work, "pki") });
  A = makeLuksImage(work, "root.img");
  B = makeLuksImage(work, "var.img");
  kbs = await startTestKbs({ tls: pki.tls, resources: { "default/key/root": A.key, "default/key/var": B.key } });
});
afterAll(async () => {
  await kbs?.close();
  if (work) fs.rmSync(work, { recursive: true, force: true });
});

interface Setup {
  dir: string;
  sock: string;
  crypttab: string;
  cfg: string;
  state: string;
  root: string;
}

function setup(o: { crypttab?: (s: { sock: string }) => string; volumes?: object[] } = {}): Setup {
  const dir = fs.mkdtempSync(path.join(work, "case-"));
  const sock = path.join(dir, "run/key.sock");
  const state = path.join(dir, "state");
  const crypttab = path.join(dir, "crypttab");
  fs.writeFileSync(
    crypttab,
    o.crypttab?.({ sock }) ??
      `root ${A.file} ${sock} luks,headless=true\nvar ${B.file} ${sock} luks,headless=true,discard\n`,
  );
  const cfg = path.join(dir, "config.json");
  fs.writeFileSync(
    cfg,
    JSON.stringify({
      kbs: { endpoints: [kbs.url], ca_file: pki.caFile, request_timeout_s: 10 },
      platform: { tee: "sample", allow_sample: true },
      deadline_s: 20,
      unlock: {
        device_timeout_s: 2,
        volumes: o.volumes ?? [
          { name: "root", uuid: A.uuid, resource: "default/key/root" },
          { name: "var", resource: "default/key/var" },
        ],
        measure: { tpm: "off", rtmr_mode: "off", record_path: path.join(state, "measurements.cbor") },
      },
    }),
  );
  // A stand-in platform root: the host's cmdline is not ours to judge; loop 7:0/7:1 back the images.
  const root = path.join(dir, "root");
  fs.mkdirSync(path.join(root, "proc"), { recursive: true });
  fs.writeFileSync(path.join(root, "proc/cmdline"), "quiet\n");
  for (const [devno, img] of [
    ["7:0", A.file],
    ["7:1", B.file],
  ] as const) {
    fs.mkdirSync(path.join(root, "sys/dev/block", devno, "loop"), { recursive: true });
    fs.writeFileSync(path.join(root, "sys/dev/block", devno, "loop/backing_file"), img + "\n");
  }
  return { dir, sock, crypttab, cfg, state, root };
}

function serve(s: Setup): Promise<RunResult> {
  return runCli(
    [
      "serve-keys",
      "--config",
      s.cfg,
      "--crypttab",
      s.crypttab,
      "--socket",
      s.sock,
      "--platform-root",
      s.root,
      "--log-format",
      "text",
    ],
    { timeoutMs: 60_000 },
  );
}

/**
 * Connect as the host would, bound to `name` (abstract when it starts with "@"; "hex:…" binds those
 * exact bytes); the bytes read, or the error.
 */
async function peer(
  sock: string,
  name: string | undefined,
  o: { uid?: number } = {},
): Promise<{ bytes?: Buffer; error?: string }> {
  const py = `
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.settimeout(20)
if len(sys.argv) > 2:
    a = sys.argv[2]
    s.bind(bytes.fromhex(a[4:]) if a.startswith("hex:") else a.replace("@", "\\0", 1))
try:
    s.connect(sys.argv[1])
except OSError as e:
    print("ERR", e.errno); sys.exit(0)
data = b""
while True:
    try:
        b = s.recv(4096)
    except OSError as e:
        print("ERR", e.errno); sys.exit(0)
    if not b: break
    data += b
sys.stdout.write("OK " + data.hex())
`;
  // Asynchronous: the test KBS runs in this process and must keep answering meanwhile.
  const args = ["python3", "-c", py, sock, ...(name !== undefined ? [name] : [])];
  // another user: the system python (a per-user shim on PATH may not be readable to it)
  const as = o.uid === undefined ? [] : ["setpriv", `--reuid=${o.uid}`, `--regid=${o.uid}`, "--clear-groups"];
  if (o.uid !== undefined) args[0] = "/usr/bin/python3";
  const [cmd, ...rest] = [...as, ...args];
  const { stdout: out } = await execFileAsync(cmd!, rest, { encoding: "utf8", timeout: 30_000 });
  return out.startsWith("OK ") ? { bytes: Buffer.from(out.slice(3).trim(), "hex") } : { error: out.trim() };
}

async function socketUp(sock: string): Promise<void> {
  for (let i = 0; i < 200 && !fs.existsSync(sock); i++) await new Promise((r) => setTimeout(r, 50));
  expect(fs.existsSync(sock)).toBe(true);
}

function noSecretIn(r: RunResult): void {
  for (const k of [A.key, B.key])
    for (const form of [k.toString("hex"), k.toString("base64")]) {
      expect(r.stderr.includes(form)).toBe(false);
      expect(r.stdout.includes(Buffer.from(form))).toBe(false);
    }
}

describe.skipIf(!have)("serve-keys (mode B key socket, binary, test KBS)", () => {
  it.skipIf(!SYSTEMD_CRYPTSETUP)(
    "one attestation, each volume its own key; real systemd-cryptsetup names its volume in its peer address",
    async () => {
      kbs.resetStats();
      const s = setup();
      const server = serve(s);
      await socketUp(s.sock);
      expect(fs.statSync(s.sock).mode & 0o777).toBe(0o600);
      // systemd-cryptsetup reads the key from the socket, then fails only at the missing device-mapper.
      const sc = await execFileAsync(SYSTEMD_CRYPTSETUP!, ["attach", "root", A.file, s.sock, "headless=true"], {
        encoding: "utf8",
        timeout: 40_000,
      }).catch((e: { stderr: string }) => e);
      expect(sc.stderr).not.toMatch(/Failed to (read|load) key file/);
      expect((await peer(s.sock, `@${crypto.randomBytes(8).toString("hex")}/cryptsetup/var`)).bytes).toEqual(B.key);
      const r = await server;
      expect(r.code, r.stderr).toBe(0);
      expect(r.stderr).toMatch(/served the key of volume root/);
      expect(r.stdout.toString()).toBe("served: root, var\n");
      expect(kbs.stats.requests.auth).toBe(1);
      expect(kbs.stats.requests.attest).toBe(1);
      expect(kbs.stats.requests.resource).toBe(2);
      const verified = JSON.parse(fs.readFileSync(path.join(s.state, "verified.json"), "utf8"));
      expect(verified.volumes.map((v: { name: string; table_options: string[] }) => [v.name, v.table_options])).toEqual(
        [
          ["root", []],
          ["var", ["allow_discards"]],
        ],
      );
      const opened = JSON.parse(fs.readFileSync(path.join(s.state, "opened.json"), "utf8"));
      expect(opened.volumes.map((v: { name: string; uuid: string }) => [v.name, v.uuid])).toEqual([
        ["root", A.uuid],
        ["var", B.uuid],
      ]);
      noSecretIn(r);
      // Done serving: a late connection is refused outright (ECONNREFUSED), not left waiting.
      expect((await peer(s.sock, "@1/cryptsetup/root")).error).toBe("ERR 111");
    },
  );

  it("the host asks for another volume's key, without a name, and a second time for the same volume: nothing", async () => {
    const s = setup();
    const server = serve(s);
    await socketUp(s.sock);
    expect((await peer(s.sock, "@abc/cryptsetup/evil")).bytes).toEqual(Buffer.alloc(0));
    expect((await peer(s.sock, undefined)).bytes).toEqual(Buffer.alloc(0));
    expect((await peer(s.sock, "@not-cryptsetup")).bytes).toEqual(Buffer.alloc(0));
    expect((await peer(s.sock, "@1/cryptsetup/root")).bytes).toEqual(A.key);
    expect((await peer(s.sock, "@2/cryptsetup/root")).bytes).toEqual(Buffer.alloc(0));
    expect((await peer(s.sock, "@3/cryptsetup/var")).bytes).toEqual(B.key);
    const r = await server;
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/"evil" is not one this key socket serves/);
    expect(r.stderr).toMatch(/unnamed socket/);
    expect(r.stderr).toMatch(/volume root was already served \(a second connection for it\)/);
    noSecretIn(r);
  });

  it("hostile peers (NUL bytes, overlong names, path tricks, a non-root process) and two connections racing for one volume: one key each, once", async () => {
    const s = setup();
    const server = serve(s);
    await socketUp(s.sock);
    const hex = (b: Buffer) => `hex:${b.toString("hex")}`;
    for (const name of [
      hex(Buffer.concat([Buffer.from("\0" + "1/cryptsetup/ro"), Buffer.from([0]), Buffer.from("ot")])), // NUL inside
      hex(Buffer.from("\0" + "1/cryptsetup/root\0")), // trailing NUL
      hex(Buffer.from("\0" + "\0" + "1/cryptsetup/root")), // NUL before the random part
      `@1/cryptsetup/${"r".repeat(92)}`, // the longest abstract name (108 bytes)
      "@1/cryptsetup/../root",
      "@1/cryptsetup/root/",
      "@12345678901234567/cryptsetup/root", // a random part longer than systemd's 64 bits
    ])
      expect((await peer(s.sock, name)).bytes, name).toEqual(Buffer.alloc(0));
    // A process of another user that gets past the file mode (loosened here) is refused by SO_PEERCRED.
    const modes = [work, s.dir, path.dirname(s.sock)].map((d) => [d, fs.statSync(d).mode & 0o777] as const);
    try {
      for (const [d] of modes) fs.chmodSync(d, 0o711);
      fs.chmodSync(s.sock, 0o666);
      expect((await peer(s.sock, "@1/cryptsetup/root", { uid: 65534 })).bytes).toEqual(Buffer.alloc(0));
    } finally {
      for (const [d, m] of modes) fs.chmodSync(d, m);
      fs.chmodSync(s.sock, 0o600);
    }
    // Both wait in the backlog while the keys are fetched: exactly one of them gets root's key.
    const [x, y] = await Promise.all([peer(s.sock, "@a/cryptsetup/root"), peer(s.sock, "@b/cryptsetup/root")]);
    expect([x.bytes, y.bytes].filter((b) => b?.equals(A.key))).toHaveLength(1);
    expect([x.bytes, y.bytes].filter((b) => b?.length === 0)).toHaveLength(1);
    expect((await peer(s.sock, "@c/cryptsetup/var")).bytes).toEqual(B.key);
    const r = await server;
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr.match(/is not systemd-cryptsetup's/g)?.length).toBe(6);
    expect(r.stderr).toMatch(/volume "r{92}" is not one this key socket serves/);
    expect(r.stderr).toMatch(/the peer runs as uid 65534, not root/);
    expect(r.stderr).toMatch(/volume root was already served/);
    noSecretIn(r);
    // nothing it wrote (verified.json, opened.json, the measurement record) holds a key
    for (const f of fs.readdirSync(s.state, { recursive: true }) as string[]) {
      const p = path.join(s.state, f);
      if (!fs.statSync(p).isFile()) continue;
      const bytes = fs.readFileSync(p);
      for (const k of [A.key, B.key]) expect(bytes.includes(k) || bytes.includes(k.toString("base64")), f).toBe(false);
    }
  });

  it("a crypttab that would bypass the served key or the checked header: exit 3, no socket, no KBS request", async () => {
    kbs.resetStats();
    const line = (sock: string, name: string, opts: string) => `${name} ${A.file} ${sock} ${opts}\n`;
    for (const [crypttab, re] of [
      [(sock: string) => line(sock, "root", "luks,headless=true,keyfile-offset=4096"), /option keyfile-offset/],
      [(sock: string) => line(sock, "root", `luks,headless=true,header=${B.file}`), /option header/],
      [(sock: string) => line(sock, "root", "luks,headless=true") + line(sock, "root", "luks,headless=true"), /twice/],
      [(sock: string) => line("/etc/root.key", "root", "luks") + line(sock, "root", "luks,headless=true"), /twice/],
      [(sock: string) => line(sock, "..", "luks,headless=true"), /not a device-mapper name/],
      [(sock: string) => line(sock, "r/oot", "luks,headless=true"), /not a device-mapper name/],
    ] as const) {
      const s = setup({
        crypttab: ({ sock }) => crypttab(sock),
        volumes: [{ name: "root", resource: "default/key/root" }],
      });
      const r = await serve(s);
      expect(r.code, r.stderr).toBe(EXIT_CODES.config);
      expect(r.stderr).toMatch(re);
      expect(fs.existsSync(s.sock)).toBe(false);
    }
    expect(kbs.stats.requests.auth).toBe(0);
  });

  it("a crypttab-named device replaced by another LUKS volume: refused before any KBS contact", async () => {
    kbs.resetStats();
    // crypttab points root at the var image; the trusted config says root is LUKS UUID A.
    const s = setup({
      crypttab: ({ sock }) => `root ${B.file} ${sock} luks,headless=true\n`,
      volumes: [{ name: "root", uuid: A.uuid, resource: "default/key/root" }],
    });
    const r = await serve(s);
    expect(r.code, r.stderr).toBe(EXIT_CODES.volume);
    expect(r.stderr).toMatch(new RegExp(`has LUKS UUID ${B.uuid}, but volume root must be ${A.uuid}`));
    expect(kbs.stats.requests.auth).toBe(0);
    expect(fs.existsSync(path.join(s.state, "verified.json"))).toBe(false);
  });

  it("a header outside the allow-list (cipher_null written by the host): refused before any KBS contact", async () => {
    kbs.resetStats();
    const img = path.join(work, `null-${crypto.randomBytes(3).toString("hex")}.img`);
    fs.copyFileSync(A.file, img);
    execFileSync("python3", [
      "-c",
      // Rewrite the segment cipher in both JSON areas; the checksum no longer matches, which the codec refuses too.
      `import sys; p=sys.argv[1]; b=bytearray(open(p,'rb').read()); b=b.replace(b'"encryption":"aes-xts-plain64","sector_size"', b'"encryption":"cipher_null-ecb","sector_size"'); open(p,'wb').write(b)`,
      img,
    ]);
    const s = setup({
      crypttab: ({ sock }) => `root ${img} ${sock} luks,headless=true\n`,
      volumes: [{ name: "root", resource: "default/key/root" }],
    });
    const r = await serve(s);
    expect(r.code, r.stderr).toBe(EXIT_CODES.volume);
    expect(kbs.stats.requests.auth).toBe(0);
  });

  it("refuses a crypttab entry without headless=true, and a configured volume crypttab does not serve", async () => {
    const noHeadless = setup({ crypttab: ({ sock }) => `root ${A.file} ${sock} luks\n` });
    const r1 = await serve(noHeadless);
    expect(r1.code).toBe(EXIT_CODES.config);
    expect(r1.stderr).toMatch(/headless=true is missing/);
    const leftover = setup({ crypttab: ({ sock }) => `root ${A.file} ${sock} luks,headless=true\n` });
    const r2 = await serve(leftover);
    expect(r2.code).toBe(EXIT_CODES.config);
    expect(r2.stderr).toMatch(/unlock.volumes names var, which .* does not give the cvm-unlock key socket/);
  });
});

describe.skipIf(!have)("verify-mapping after systemd-cryptsetup (stand-in dmsetup/cryptsetup)", () => {
  const GOOD = "0 8192 crypt aes-xts-plain64 :64:logon:cryptsetup:x-d0 0 7:0 32768 2 sector_size:4096 iv_large_sectors";
  let s: Setup;

  beforeAll(async () => {
    if (!have) return;
    s = setup();
    const server = serve(s);
    await socketUp(s.sock);
    await peer(s.sock, "@1/cryptsetup/root");
    await peer(s.sock, "@2/cryptsetup/var");
    expect((await server).code).toBe(0);
  });

  function verify(name: string, table: string): { r: Promise<RunResult>; log: string } {
    const log = path.join(s.dir, `tools-${crypto.randomBytes(3).toString("hex")}.log`);
    const tool = (n: string, body: string) => {
      const f = path.join(s.dir, `${n}-${crypto.randomBytes(3).toString("hex")}`);
      fs.writeFileSync(f, `#!/bin/bash\necho "${n} $*" >> ${log}\n${body}\n`, { mode: 0o755 });
      return f;
    };
    const dmsetup = tool("dmsetup", `[ "$1" = table ] && printf '%s\\n' '${table}'; exit 0`);
    const cryptsetup = tool("cryptsetup", "exit 0");
    const cfg = JSON.parse(fs.readFileSync(s.cfg, "utf8"));
    cfg.unlock.dmsetup = dmsetup;
    cfg.unlock.cryptsetup = cryptsetup;
    const file = path.join(s.dir, `verify-${crypto.randomBytes(3).toString("hex")}.json`);
    fs.writeFileSync(file, JSON.stringify(cfg));
    const args = ["verify-mapping", "--config", file, "--crypttab", s.crypttab, "--socket", s.sock];
    return { r: runCli([...args, "--platform-root", s.root, "--log-format", "text", name]), log };
  }

  it("a live table equal to the verified header passes; discard is accepted where crypttab asked for it", async () => {
    const ok = verify("root", GOOD);
    expect((await ok.r).code).toBe(0);
    expect(fs.readFileSync(ok.log, "utf8")).not.toMatch(/close/);
    const varTable = GOOD.replace("7:0", "7:1").replace("2 sector_size", "3 allow_discards sector_size");
    const v = await verify("var", varTable).r;
    expect(v.code, v.stderr).toBe(0);
    const r = await verify("root", GOOD.replace("2 sector_size", "3 allow_discards sector_size")).r;
    expect(r.code).toBe(EXIT_CODES.volume);
    expect(r.stderr).toMatch(/unexpected option "allow_discards"/);
  });

  for (const [what, table, re] of [
    [
      "a header swapped to cipher_null between the check and the open",
      GOOD.replace("aes-xts-plain64", "cipher_null-ecb"),
      /cipher is cipher_null-ecb/,
    ],
    ["another device opened under the crypttab name", GOOD.replace("7:0", "7:1"), /backing device 7:1/],
    ["a data offset moved into the metadata", GOOD.replace(" 32768 ", " 0 "), /data offset/],
  ] as const)
    it(`the host attacks: ${what} → the mapping is closed, exit 15`, async () => {
      const v = verify("root", table);
      const r = await v.r;
      expect(r.code, r.stderr).toBe(EXIT_CODES.volume);
      expect(r.stderr).toMatch(re);
      expect(r.stderr).toMatch(/mapping root closed: refusing/);
      expect(fs.readFileSync(v.log, "utf8")).toMatch(/cryptsetup close root/);
    });

  it("a volume of the socket with no verified record is closed; a volume that is not ours is left alone", async () => {
    fs.writeFileSync(
      s.crypttab,
      fs.readFileSync(s.crypttab, "utf8") + `extra ${A.file} ${s.sock} luks,headless=true\n`,
    );
    const missing = verify("extra", GOOD);
    const r = await missing.r;
    expect(r.code).toBe(EXIT_CODES.volume);
    expect(r.stderr).toMatch(/no verified header is recorded for extra/);
    expect(fs.readFileSync(missing.log, "utf8")).toMatch(/cryptsetup close extra/);
    const other = await verify("swap", GOOD).r;
    expect(other.code).toBe(0);
    expect(other.stdout.toString()).toMatch(/swap: not a volume of the cvm-unlock key socket/);
  });

  it("a verified.json replaced (FIFO, symlink to /dev/zero, an edited record): refused at once, the mapping closed", async () => {
    const record = path.join(s.state, "verified.json");
    const original = fs.readFileSync(record, "utf8");
    const edited = JSON.parse(original);
    edited.volumes[0].mapping.note = "host was here";
    try {
      for (const [what, plant, re] of [
        ["a FIFO", () => execFileSync("mkfifo", [record]), /is not a regular file/],
        ["a symlink to /dev/zero", () => fs.symlinkSync("/dev/zero", record), /is not a regular file/],
        [
          "an edited record",
          () => fs.writeFileSync(record, JSON.stringify(edited)),
          /mapping\.note' is not a known key/,
        ],
      ] as const) {
        fs.rmSync(record, { force: true });
        plant();
        const v = verify("root", GOOD);
        const r = await v.r;
        expect(r.timedOut, what).toBe(false);
        expect(r.code, `${what}: ${r.stderr}`).toBe(EXIT_CODES.volume);
        expect(r.stderr).toMatch(re);
        expect(fs.readFileSync(v.log, "utf8")).toMatch(/cryptsetup close root/);
      }
    } finally {
      fs.rmSync(record, { force: true });
      fs.writeFileSync(record, original);
    }
  });
});
