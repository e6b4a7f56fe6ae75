// `cvm-unlock bind` (the compiled binary) end to end: Debian's cryptsetup on LUKS2 image files, the
// test KBS over TLS with trustee's admin API (AuthenticatedAuthorization, EdDSA admin JWTs), then
// `unlock --test-only` with the key the KBS releases. Every refusal must leave the header as it
// was, byte for byte, and the KBS without the resource.
import * as crypto from "node:crypto";
import { spawn, spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { luks2FingerprintV2 } from "../../agent/unlock/fingerprint.ts";
import { readLuks2Header } from "../../platform/luks/volume-io.ts";
import { b64url } from "../../platform/util/bytes.ts";
import { EXIT_CODES } from "../../platform/util/errors.ts";
import { BINARY, ensureBinary, runCli, type RunResult } from "../helpers/binary.ts";
import { toolsAvailable } from "../helpers/tools.ts";
import { createPki, type Pki } from "../helpers/pki.ts";
import { startSwtpm, swtpmAvailable, type Swtpm } from "../helpers/swtpm.ts";
import { FakeTsm } from "../helpers/fake-tsm.ts";
import { snpProvider, testPki } from "../helpers/snp-fixtures.ts";
import { startTestKbs, type AdminConfig, type TestKbs } from "../kbs/server.ts";
import { makeSnpVerifier } from "../kbs/verifiers/snp.ts";
import {
  CRYPTSETUP,
  cryptsetupAvailable,
  makeLuksImage,
  rewriteLuks2Json,
  tokenExport,
  type LuksImage,
} from "../unit/unlock/luks-image.ts";

const have = cryptsetupAvailable();
const ROLE_ACL = "^/kbs/v0/(resource/default/key/[^/]+|resource-policy)$";
let work: string;
let pki: Pki;
let kbs: TestKbs;
let owner: { keyFile: string; pubPem: string };
let stranger: { keyFile: string };

function ed25519Key(name: string): { keyFile: string; pubPem: string; privPem: string } {
  const { privateKey, publicKey } = crypto.generateKeyPairSync("ed25519");
  const privPem = privateKey.export({ type: "pkcs8", format: "pem" }) as string;
  const keyFile = path.join(work, `${name}.key`);
  fs.writeFileSync(keyFile, privPem, { mode: 0o600 });
  return { keyFile, pubPem: publicKey.export({ type: "spki", format: "pem" }) as string, privPem };
}

/** The KBS's [admin] section: the owner's key, issuer and audience, role admin on the key paths. */
const ownerAdmin = (): AdminConfig => ({
  mode: "AuthenticatedAuthorization",
  identityProviders: [{ issuer: "owner", audience: "kbs", publicKeyPem: owner.pubPem }],
  acls: [{ role: "admin", allowedEndpoints: ROLE_ACL }],
});
const sha = (file: string) => crypto.createHash("sha256").update(fs.readFileSync(file)).digest("hex");
const keyOpens = (img: string, key: Buffer) =>
  spawnSync(CRYPTSETUP!, ["open", "--test-passphrase", "--key-file=-", img], { input: key }).status === 0;

beforeAll(async () => {
  if (!have) return;
  ensureBinary();
  work = fs.mkdtempSync(path.join(os.tmpdir(), "bind-it-"));
  pki = createPki({ dir: path.join(work, "pki") });
  const o = ed25519Key("owner");
  owner = { keyFile: o.keyFile, pubPem: o.pubPem };
  stranger = { keyFile: ed25519Key("stranger").keyFile };
  kbs = await startTestKbs({
    tls: pki.tls,
    admin: ownerAdmin(),
  });
});
afterAll(async () => {
  await kbs?.close();
  if (work) fs.rmSync(work, { recursive: true, force: true });
});
beforeEach(() => {
  kbs?.resetStats();
  kbs?.setPolicy("allow");
});

function bind(
  img: LuksImage,
  resource: string,
  extra: string[],
  fds = 0,
  existingKey: Buffer = img.key,
): Promise<RunResult> {
  return runCli(
    [
      "bind",
      img.file,
      "--kbs",
      kbs.url,
      "--ca",
      pki.caFile,
      "--resource",
      resource,
      "--unlock-key-file",
      "-",
      "--log-format",
      "text",
      ...extra,
    ],
    { input: existingKey, timeoutMs: 90_000, extraFds: fds },
  );
}
const asOwner = ["--admin-key", "", "--admin-issuer", "owner", "--admin-audience", "kbs"];
const ownerArgs = () => asOwner.map((a) => (a === "" ? owner.keyFile : a));

/** A config that trusts the token bind writes, as an image owner would ship it. */
function tokenConfig(platform: Record<string, unknown>): string {
  const file = path.join(work, `cfg-${crypto.randomBytes(4).toString("hex")}.json`);
  fs.writeFileSync(
    file,
    JSON.stringify({
      kbs: { request_timeout_s: 10 },
      platform,
      unlock: {
        require_pins: true,
        luks_token: {
          trust: true,
          allowed_endpoints: [kbs.url],
          allowed_ca_files: [pki.caFile],
          allowed_resources: ["default/key/*"],
        },
      },
    }),
  );
  return file;
}
const SAMPLE = { tee: "sample", allow_sample: true };

function noKeyIn(r: RunResult, key: Buffer): void {
  for (const form of [key.toString("hex"), key.toString("base64"), key.toString("latin1")])
    expect(r.stdout.toString("latin1") + r.stderr).not.toContain(form);
}

/** The released value and the key inside it. */
function storedKey(resource: string): { doc: Record<string, unknown>; key: Buffer } {
  const doc = JSON.parse(Buffer.from(kbs.resources.get(resource)!).toString("utf8"));
  return { doc, key: Buffer.from(doc.key, "base64") };
}

describe.skipIf(!have)("bind: enrol, upload, token → unlock opens it with the KBS key", () => {
  it("one command takes a LUKS2 image with a passphrase to one that unlock opens with the released key", async () => {
    const img = makeLuksImage(work, "a.img");
    const r = await bind(img, "default/key/a", [...ownerArgs(), "--pin", "uuid", "--pin", "digest"]);
    expect(r.code, r.stderr).toBe(0);
    const out = r.stdout.toString();
    expect(out).toMatch(
      /keyslot 1 added \(PBKDF2-SHA256, 1000 iterations; 64-byte random key\), cvm-unlock token 0 linked/,
    );
    expect(r.stderr).toMatch(/is an image file, not a VM's own disk: every VM cloned from it shares this volume key/);

    // The KBS got exactly one upload: a key document pinning this volume.
    expect(kbs.stats.uploads).toEqual([{ method: "POST", path: "default/key/a", bytes: expect.any(Number) }]);
    const { doc, key } = storedKey("default/key/a");
    const header = readLuks2Header(img.file);
    expect(doc).toEqual({
      cvm_unlock_key: 1,
      key: key.toString("base64"),
      pins: { uuid: img.uuid, luks2_fingerprint_v2: luks2FingerprintV2(header) },
    });
    expect(key).toHaveLength(64);
    noKeyIn(r, key);

    // The header: the old keyslot stays, the new one opens with the KBS key, the token names it.
    expect(Object.keys(header.json.keyslots).sort()).toEqual(["0", "1"]);
    expect(keyOpens(img.file, img.key)).toBe(true);
    expect(
      spawnSync(CRYPTSETUP!, ["open", "--test-passphrase", "--key-slot", "1", "--key-file=-", img.file], { input: key })
        .status,
    ).toBe(0);
    expect(header.json.keyslots["1"]!.kdf).toMatchObject({ type: "pbkdf2", hash: "sha256", iterations: 1000 });
    expect(tokenExport(img.file, 0)).toMatchObject({ type: "cvm-unlock", keyslots: ["1"], resource: "default/key/a" });

    const u = await runCli(["unlock", "--test-only", "--config", tokenConfig(SAMPLE), "--device", img.file], {
      timeoutMs: 60_000,
    });
    expect(u.code, u.stderr).toBe(0);
    expect(kbs.stats.released).toBe(1);
  });

  it("--wipe-slot all-but-new leaves only the new keyslot; the old passphrase no longer opens the volume", async () => {
    const img = makeLuksImage(work, "wipe.img");
    const r = await bind(img, "default/key/wipe", [...ownerArgs(), "--wipe-slot", "all-but-new"]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout.toString()).toMatch(/keyslot\(s\) 0 wiped/);
    expect(Object.keys(readLuks2Header(img.file).json.keyslots)).toEqual(["1"]);
    expect(keyOpens(img.file, img.key)).toBe(false);
    const raw = Buffer.from(kbs.resources.get("default/key/wipe")!);
    expect(raw).toHaveLength(64); // no --pin: the raw key
    expect(keyOpens(img.file, raw)).toBe(true);
  });

  it("--wipe-slot N wipes that slot; a slot the header does not have is refused before anything happens", async () => {
    const img = makeLuksImage(work, "wipe-n.img");
    const before = sha(img.file);
    const bad = await bind(img, "default/key/wipe-n", [...ownerArgs(), "--wipe-slot", "5"]);
    expect(bad.code).toBe(EXIT_CODES.usage);
    expect(bad.stderr).toMatch(/--wipe-slot "5": .* has no such keyslot \(it has 0\)/);
    expect(sha(img.file)).toBe(before);
    expect(kbs.stats.uploads).toEqual([]);
    const ok = await bind(img, "default/key/wipe-n", [
      ...ownerArgs(),
      "--wipe-slot",
      "0",
      "--pin",
      "uuid",
      "--pin",
      "digest",
    ]);
    expect(ok.code, ok.stderr).toBe(0);
    expect(keyOpens(img.file, img.key)).toBe(false);
    // Wiping a keyslot leaves the v2 fingerprint as pinned: unlock still accepts the volume.
    const u = await runCli(["unlock", "--test-only", "--config", tokenConfig(SAMPLE), "--device", img.file], {
      timeoutMs: 60_000,
    });
    expect(u.code, u.stderr).toBe(0);
  });

  it("--key-out-fd: no upload; the value goes to the caller's pipe with the exact upload instructions", async () => {
    const img = makeLuksImage(work, "fd.img");
    const r = await bind(img, "default/key/fd", ["--key-out-fd", "3", "--pin", "uuid"], 1);
    expect(r.code, r.stderr).toBe(0);
    expect(kbs.stats.requests.resource).toBe(0);
    const doc = JSON.parse(r.fds[0]!.toString("utf8"));
    expect(doc.pins).toEqual({ uuid: img.uuid });
    const key = Buffer.from(doc.key, "base64");
    expect(keyOpens(img.file, key)).toBe(true);
    noKeyIn(r, key);
    const out = r.stdout.toString();
    expect(out).toContain(`POST ${kbs.url}/kbs/v0/resource/default/key/fd  (Content-Type: application/octet-stream`);
    expect(out).toContain(
      `kbs-client --url ${kbs.url} --cert-file ${pki.caFile} config --admin-token-file ADMIN_TOKEN set-resource --path default/key/fd`,
    );
  });
});

describe.skipIf(!have || !toolsAvailable("script"))("bind on a terminal", () => {
  it("asks for the existing passphrase without echo (util-linux script gives it a pty)", async () => {
    const img = makeLuksImage(work, "tty.img", undefined, Buffer.from("typed passphrase"));
    const out = path.join(work, "tty-key.bin");
    const cmd = `${BINARY} bind ${img.file} --kbs ${kbs.url} --resource default/key/tty --key-out-fd 3 3>${out}`;
    const child = spawn("script", ["-qec", cmd, "/dev/null"], { stdio: ["pipe", "pipe", "pipe"] });
    let seen = "";
    let typed = false;
    child.stdout.on("data", (d: Buffer) => {
      seen += d.toString("latin1");
      if (!typed && seen.includes("Existing passphrase for")) {
        typed = true; // typed right after the prompt appears: echo must already be off
        child.stdin.write("typed passphrase\r");
      }
    });
    const code = await new Promise<number | null>((resolve) => child.on("close", resolve));
    expect(code, seen).toBe(0);
    expect(seen).not.toContain("typed passphrase");
    expect(keyOpens(img.file, fs.readFileSync(out))).toBe(true);
  });
});

describe.skipIf(!have)("bind: a refused or failed upload leaves the header byte for byte", () => {
  async function expectUntouched(
    name: string,
    extra: string[],
    code: number,
    message: RegExp,
    fds = 0,
    tamper?: (file: string) => void,
  ) {
    const img = makeLuksImage(work, `${name}.img`);
    tamper?.(img.file);
    const before = sha(img.file);
    const r = await bind(img, `default/key/${name}`, extra, fds);
    expect(r.code, r.stderr).toBe(code);
    expect(r.stderr).toMatch(message);
    expect(sha(img.file)).toBe(before);
    expect(kbs.resources.has(`default/key/${name}`)).toBe(false);
    expect(kbs.stats.uploads).toEqual([]);
    return r;
  }

  it("an admin JWT signed by another Ed25519 key: 401 AdminAuthInitialization, nothing stored", async () => {
    await expectUntouched(
      "stranger",
      ["--admin-key", stranger.keyFile, "--admin-issuer", "owner", "--admin-audience", "kbs"],
      EXIT_CODES["kbs-refused"],
      /refused the admin credentials: AdminAuthInitialization: .*Cannot verify token with any of the issuers/,
    );
    expect(kbs.stats.errors.at(-1)?.variant).toBe("AdminAuthInitialization");
  });

  it("the right key with the wrong issuer or audience is refused (trustee checks them when configured)", async () => {
    await expectUntouched(
      "wrong-iss",
      ["--admin-key", owner.keyFile, "--admin-issuer", "someone", "--admin-audience", "kbs"],
      EXIT_CODES["kbs-refused"],
      /Cannot verify token with any of the issuers/,
    );
    await expectUntouched(
      "no-aud",
      ["--admin-key", owner.keyFile, "--admin-issuer", "owner"],
      EXIT_CODES["kbs-refused"],
      /Cannot verify token with any of the issuers/,
    );
  });

  it("a role the ACL does not allow on this path is refused", async () => {
    await expectUntouched(
      "reader",
      ["--admin-key", owner.keyFile, "--admin-issuer", "owner", "--admin-audience", "kbs", "--admin-role", "reader"],
      EXIT_CODES["kbs-refused"],
      /Role reader not allowed for path \/kbs\/v0\/resource\/default\/key\/reader/,
    );
  });

  it("--admin-token-file: an expired token is refused before any request; a valid one works", async () => {
    const o = owner.keyFile;
    const sign = (claims: object) => {
      const input = `${b64url(Buffer.from('{"alg":"EdDSA","typ":"JWT"}'))}.${b64url(Buffer.from(JSON.stringify(claims)))}`;
      const sig = crypto.sign(null, Buffer.from(input), crypto.createPrivateKey(fs.readFileSync(o)));
      const file = path.join(work, `token-${crypto.randomBytes(4).toString("hex")}`);
      fs.writeFileSync(file, `${input}.${b64url(sig)}\n`);
      return file;
    };
    const now = Math.floor(Date.now() / 1000);
    const expired = sign({ iss: "owner", aud: ["kbs"], role: "admin", iat: now - 7200, exp: now - 3600 });
    await expectUntouched("expired", ["--admin-token-file", expired], EXIT_CODES.usage, /the token expired at/);
    expect(kbs.stats.requests.resource).toBe(0);

    const img = makeLuksImage(work, "tokenfile.img");
    const good = sign({ iss: "owner", aud: ["kbs"], role: "admin", iat: now, exp: now + 600 });
    const r = await bind(img, "default/key/tokenfile", ["--admin-token-file", good]);
    expect(r.code, r.stderr).toBe(0);
    expect(kbs.resources.has("default/key/tokenfile")).toBe(true);
  });

  it("no credentials against a KBS that requires them (--admin-anonymous): refused", async () => {
    await expectUntouched(
      "anonymous",
      ["--admin-anonymous"],
      EXIT_CODES["kbs-refused"],
      /Failed to parse HTTP Auth Bearer header[\s\S]*this KBS requires an admin token/,
    );
  });

  it("the KBS keeps failing (HTTP 503): network error after the retries, header untouched", async () => {
    kbs.faults.unavailable.resource = { count: 3 };
    try {
      await expectUntouched("outage", ownerArgs(), EXIT_CODES.network, /failed 3 time\(s\); last: .*HTTP 503/);
    } finally {
      kbs.faults.unavailable.resource = undefined;
    }
  });

  it("a wrong existing passphrase: nothing is uploaded, nothing changed", async () => {
    const img = makeLuksImage(work, "wrongpass.img");
    const before = sha(img.file);
    const r = await bind(img, "default/key/wrongpass", ownerArgs(), 0, Buffer.from("not the passphrase"));
    expect(r.code).toBe(EXIT_CODES["wrong-key"]);
    expect(r.stderr).toMatch(/the existing key does not open .*: nothing was changed/);
    expect(sha(img.file)).toBe(before);
    expect(kbs.stats.requests.resource).toBe(0);
  });

  it("the keyslot cannot be added after the upload: the error says the KBS key opens nothing and what to do", async () => {
    const img = makeLuksImage(work, "noadd.img");
    const before = sha(img.file);
    const wrapper = path.join(work, "cryptsetup-noadd");
    fs.writeFileSync(
      wrapper,
      `#!/bin/sh\n[ "$1" = luksAddKey ] && { echo "simulated: keyslot area full" >&2; exit 1; }\nexec ${CRYPTSETUP} "$@"\n`,
      { mode: 0o755 },
    );
    const r = await bind(img, "default/key/noadd", [...ownerArgs(), "--cryptsetup", wrapper]);
    expect(r.code).toBe(EXIT_CODES.unlock);
    expect(r.stderr).toMatch(
      /simulated: keyslot area full.*The KBS resource default\/key\/noadd now holds a key that opens no keyslot/,
    );
    expect(r.stderr).toMatch(/run bind again \(it replaces default\/key\/noadd\)/);
    expect(sha(img.file)).toBe(before);
    expect(kbs.resources.has("default/key/noadd")).toBe(true);
  });

  it("a header the agent's allow-list refuses (cipher_null data segment) gets no key: refused before any request", async () => {
    await expectUntouched("nullcipher", ownerArgs(), EXIT_CODES.volume, /segments\.0\.encryption/, 0, (file) =>
      rewriteLuks2Json(file, (j) => void (j.segments["0"].encryption = "cipher_null-ecb")),
    );
    expect(kbs.stats.requests.resource).toBe(0);
  });

  it("--key-out-fd refuses stderr before anything happens", async () => {
    await expectUntouched(
      "fd2",
      ["--key-out-fd", "2"],
      EXIT_CODES.usage,
      /refusing to write a key to file descriptor 2/,
    );
  });
});

describe.skipIf(!have)("bind --policy: the uploaded resource policy releases only to the measured VM", () => {
  it("without a command-line measurement the templates are refused", async () => {
    const img = makeLuksImage(work, "nocmdline.img");
    const r = await bind(img, "default/key/nocmdline", [...ownerArgs(), "--policy", "init-data=" + "ab".repeat(32)]);
    expect(r.code).toBe(EXIT_CODES.usage);
    expect(r.stderr).toMatch(/do not cover the kernel command line/);
  });

  it("--resource-policy FILE is uploaded verbatim (base64url, no padding) and enforced", async () => {
    const img = makeLuksImage(work, "verbatim.img");
    const rego =
      'package policy\nimport rego.v1\ndefault allow := false\nallow if {\n\tdata["resource-path"] == ["default", "key", "other"]\n}\n';
    const file = path.join(work, "deny-this.rego");
    fs.writeFileSync(file, rego);
    const r = await bind(img, "default/key/verbatim", [...ownerArgs(), "--pin", "uuid", "--resource-policy", file]);
    expect(r.code, r.stderr).toBe(0);
    expect(kbs.policyText).toBe(rego);
    const u = await runCli(["unlock", "--test-only", "--config", tokenConfig(SAMPLE), "--device", img.file], {
      timeoutMs: 60_000,
    });
    expect(u.code).toBe(EXIT_CODES["kbs-refused"]);
    expect(u.stderr).toMatch(/policy denied/);
  });

  describe.skipIf(!swtpmAvailable())("tpm-pcrs with swtpm evidence", () => {
    let sw: Swtpm;
    beforeAll(async () => {
      sw = await startSwtpm();
    });
    afterAll(async () => {
      await sw?.stop();
    });

    async function bindWithPcrs(name: string, pcrs: Record<string, string | string[]>) {
      const img = makeLuksImage(work, `${name}.img`);
      const ref = path.join(work, `${name}-pcrs.json`);
      fs.writeFileSync(ref, JSON.stringify(pcrs));
      const r = await bind(img, `default/key/${name}`, [
        ...ownerArgs(),
        "--pin",
        "uuid",
        "--pin",
        "digest",
        "--policy",
        "tpm-pcrs=0,7,12",
        "--pcr-values",
        ref,
      ]);
      expect(r.code, r.stderr).toBe(0);
      const cfg = tokenConfig({ tee: "tpm", tpm: sw.spec });
      const u = await runCli(["unlock", "--test-only", "--config", cfg, "--device", img.file, "--deadline", "60"], {
        timeoutMs: 90_000,
      });
      return { r, u };
    }
    const ZERO = "0".repeat(64);

    it("released when PCR 0, 7 and 12 (command line) hold a reference value; the policy printed is the one set", async () => {
      const { r, u } = await bindWithPcrs("pcrs-ok", {
        pcr00: ZERO,
        pcr07: [crypto.randomBytes(32).toString("hex"), ZERO],
        pcr12: ZERO,
      });
      expect(u.code, u.stderr).toBe(0);
      expect(r.stdout.toString()).toContain(kbs.policyText!);
      expect(kbs.policyText).toContain(
        `input.submods.cpu0["ear.veraison.annotated-evidence"].tpm.pcr12 in {"${ZERO}"}`,
      );
    });

    it("denied when the command-line PCR differs (another kernel command line)", async () => {
      const { u } = await bindWithPcrs("pcrs-cmdline", { pcr00: ZERO, pcr07: ZERO, pcr12: "12".repeat(32) });
      expect(u.code).toBe(EXIT_CODES["kbs-refused"]);
      expect(u.stderr).toMatch(/policy denied/);
    });

    it("sample evidence never satisfies a tpm-pcrs policy", async () => {
      const img = makeLuksImage(work, "pcrs-sample.img");
      const ref = path.join(work, "zero-pcrs.json");
      fs.writeFileSync(ref, JSON.stringify({ pcr00: ZERO, pcr07: ZERO, pcr12: ZERO }));
      expect(
        (
          await bind(img, "default/key/pcrs-sample", [
            ...ownerArgs(),
            "--pin",
            "uuid",
            "--policy",
            "tpm-pcrs=0,7,12",
            "--pcr-values",
            ref,
          ])
        ).code,
      ).toBe(0);
      const u = await runCli(["unlock", "--test-only", "--config", tokenConfig(SAMPLE), "--device", img.file], {
        timeoutMs: 60_000,
      });
      expect(u.code).toBe(EXIT_CODES["kbs-refused"]);
    });
  });
});

describe.skipIf(!have)("bind --policy snp-measurement with SNP evidence (stand-in configfs-tsm)", () => {
  let fake: FakeTsm;
  let outer: TestKbs;
  const snpPki = testPki();
  beforeAll(async () => {
    fake = FakeTsm.start(snpProvider(snpPki));
    outer = kbs;
    kbs = await startTestKbs({
      tls: pki.tls,
      admin: ownerAdmin(),
      verifiers: { snp: makeSnpVerifier({ anchors: [{ arkPem: snpPki.arkPem, askPem: snpPki.askPem }] }) },
    });
  });
  afterAll(async () => {
    await kbs?.close();
    kbs = outer;
    await fake?.stop();
  });

  async function bindAndUnlock(name: string, measurement: string) {
    const img = makeLuksImage(work, `${name}.img`);
    const r = await bind(img, `default/key/${name}`, [
      ...ownerArgs(),
      "--pin",
      "uuid",
      "--policy",
      `snp-measurement=${measurement}`,
    ]);
    expect(r.code, r.stderr).toBe(0);
    return runCli(
      [
        "unlock",
        "--test-only",
        "--config",
        tokenConfig({ tee: "snp" }),
        "--device",
        img.file,
        "--platform-root",
        fake.root,
      ],
      { timeoutMs: 60_000 },
    );
  }

  it("released to the launch measurement the policy names", async () => {
    const u = await bindAndUnlock("snp-ok", "a5".repeat(48)); // the stand-in firmware's MEASUREMENT
    expect(u.code, u.stderr).toBe(0);
  });

  it("denied to any other launch measurement", async () => {
    const u = await bindAndUnlock("snp-other", "5a".repeat(48));
    expect(u.code).toBe(EXIT_CODES["kbs-refused"]);
    expect(u.stderr).toMatch(/policy denied/);
  });
});

describe.skipIf(!have)("bind --token-only keeps its old job", () => {
  it("writes only the token: no keyslot, no upload", async () => {
    const img = makeLuksImage(work, "tokenonly.img");
    const r = await runCli(["bind", img.file, "--token-only", "--kbs", kbs.url, "--resource", "default/key/t"]);
    expect(r.code, r.stderr).toBe(0);
    expect(Object.keys(readLuks2Header(img.file).json.keyslots)).toEqual(["0"]);
    expect(kbs.stats.uploads).toEqual([]);
  });
});
