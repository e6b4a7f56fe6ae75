// The compiled binary as a command-line program: help, usage errors, exit codes, config errors,
// the bun CWD-autoload trap, `detect` and `evidence` against a real emulated TPM.
import { spawn, spawnSync } from "node:child_process";
import * as crypto from "node:crypto";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { decodeEvidenceRecord } from "../../agent/evidence-record.ts";
import { EXIT_CODES } from "../../platform/util/errors.ts";
import { fromB64 } from "../../platform/util/bytes.ts";
import { BINARY, ensureBinary, runCli } from "../helpers/binary.ts";
import { createPki, type Pki } from "../helpers/pki.ts";
import { startSwtpm, swtpmAvailable, type Swtpm } from "../helpers/swtpm.ts";
import { startTestKbs } from "../kbs/server.ts";

let work: string;
let pki: Pki;

beforeAll(() => {
  ensureBinary();
  work = fs.mkdtempSync(path.join(os.tmpdir(), "cli-it-"));
  pki = createPki();
});
afterAll(() => {
  fs.rmSync(work, { recursive: true, force: true });
  fs.rmSync(pki.dir, { recursive: true, force: true });
});

describe("command line", () => {
  it("version names the version, commit and protocol", async () => {
    const r = await runCli(["version"]);
    expect(r.code).toBe(0);
    expect(r.stdout.toString()).toMatch(
      /^cvm-unlock \d+\.\d+\.\d+ \(commit [0-9a-f]{12}(-dirty)?; bun [\d.]+; KBS protocol 0\.4\.0\)\n$/,
    );
  });

  it("every command has --help, and unknown commands/options are usage errors (exit 2)", async () => {
    for (const cmd of [
      "detect",
      "evidence",
      "fetch",
      "unlock",
      "inspect",
      "config",
      "bind",
      "measure",
      "verify-root",
      "version",
    ]) {
      const r = await runCli([cmd, "--help"]);
      expect(r.code, `${cmd} --help`).toBe(0);
      expect(r.stdout.toString()).toMatch(new RegExp(`^usage: cvm-unlock ${cmd}`));
    }
    expect((await runCli(["frobnicate"])).code).toBe(EXIT_CODES.usage);
    const bad = await runCli(["fetch", "--no-such-flag"]);
    expect(bad.code).toBe(EXIT_CODES.usage);
    expect(bad.stderr).toMatch(/unknown option --no-such-flag/);
    expect((await runCli([])).code).toBe(EXIT_CODES.usage);
  });

  it("logs: journald priorities when stderr is the journal, plain on a pipe, kmsg or JSON on request", async () => {
    const failing = ["fetch", "a/b/c", "--kbs", "https://127.0.0.1:9", "--tee", "sample"];
    const plain = await runCli(failing);
    expect(plain.stderr).toMatch(/^error: /m);
    expect(plain.stderr).not.toMatch(/^<\d>/m);
    // systemd names the journal stream it connected to fd 2 in JOURNAL_STREAM (dev:ino); a file
    // stands in for that stream here, so its dev:ino is known before the spawn
    const logFile = path.join(work, "journal-stream");
    const stderrOf = (env: Record<string, string>) => {
      const fd = fs.openSync(logFile, "w");
      try {
        spawnSync(BINARY, failing, { env: { PATH: process.env.PATH!, ...env }, stdio: ["ignore", "ignore", fd] });
      } finally {
        fs.closeSync(fd);
      }
      return fs.readFileSync(logFile, "utf8");
    };
    const st = () => fs.statSync(logFile, { bigint: true });
    fs.writeFileSync(logFile, "");
    const journal = stderrOf({ JOURNAL_STREAM: `${st().dev}:${st().ino}` });
    expect(journal).toMatch(/^<3>(?!cvm-unlock: )\S/m);
    // inherited from a parent whose journal stream is not our stderr: plain
    const inherited = stderrOf({ JOURNAL_STREAM: `${st().dev}:${st().ino + 1n}` });
    expect(inherited).toMatch(/^error: /m);
    const kmsg = await runCli([...failing, "--log-format", "kmsg"]);
    expect(kmsg.stderr).toMatch(/^<3>cvm-unlock: /m);
    const json = await runCli([...failing, "--log-format", "json"]);
    const line = JSON.parse(json.stderr.trim().split("\n").at(-1)!);
    expect(line).toMatchObject({ level: "error" });
  });

  it("a config error names the key and the file, with exit 3", async () => {
    const cfg = path.join(work, "bad.json");
    fs.writeFileSync(cfg, JSON.stringify({ kbs: { endpoints: ["https://kbs"], insecure_http: "no" } }));
    const r = await runCli(["fetch", "default/key/root", "--config", cfg]);
    expect(r.code).toBe(EXIT_CODES.config);
    expect(r.stderr).toContain("kbs.insecure_http: expected boolean");
    expect(r.stderr).toContain(`file:${cfg}`);
  });

  it("sample needs allow_sample; plain http needs insecure_http (fail closed)", async () => {
    const s = await runCli(["fetch", "default/key/root", "--kbs", "https://127.0.0.1:9", "--tee", "sample"]);
    expect(s.code).toBe(EXIT_CODES.config);
    expect(s.stderr).toMatch(/sample.*not allowed/);
    const h = await runCli([
      "fetch",
      "default/key/root",
      "--kbs",
      "http://127.0.0.1:9",
      "--tee",
      "sample",
      "--allow-sample",
    ]);
    expect(h.code).toBe(EXIT_CODES.config);
    expect(h.stderr).toMatch(/insecure_http|plain http/i);
  });

  it("fetch refuses to print a secret on a terminal or stderr, before contacting the KBS; ca_pem + --ca is refused", async () => {
    const secret = crypto.randomBytes(32);
    const kbs = await startTestKbs({ tls: pki.tls, resources: { "default/key/root": secret } });
    try {
      const argv = [
        BINARY,
        "fetch",
        "default/key/root",
        "--kbs",
        kbs.url,
        "--ca",
        pki.caFile,
        "--tee",
        "sample",
        "--allow-sample",
        "--config",
        path.join(work, "none.json"),
      ];
      fs.writeFileSync(path.join(work, "none.json"), "{}");
      // script(1) (util-linux, Essential in Debian) gives the binary a pseudo-terminal as stdout.
      const tty = await new Promise<{ code: number | null; out: string }>((resolve) => {
        const child = spawn("script", ["-qec", argv.map((a) => `'${a}'`).join(" "), "/dev/null"], {
          stdio: ["ignore", "pipe", "pipe"],
        });
        let out = "";
        child.stdout.on("data", (d: Buffer) => (out += d.toString("latin1")));
        child.stderr.on("data", (d: Buffer) => (out += d.toString("latin1")));
        child.on("close", (code) => resolve({ code, out }));
      });
      expect(tty.code, tty.out).toBe(EXIT_CODES.usage);
      expect(tty.out).toMatch(/refusing to write a secret to a terminal/);
      expect(tty.out).not.toContain(secret.toString("latin1"));
      expect(kbs.stats.requests.auth).toBe(0);

      const toStderr = await runCli([
        "fetch",
        "default/key/root",
        "--kbs",
        kbs.url,
        "--ca",
        pki.caFile,
        "--tee",
        "sample",
        "--allow-sample",
        "--out-fd",
        "2",
      ]);
      expect(toStderr.code, toStderr.stderr).toBe(EXIT_CODES.usage);
      expect(toStderr.stderr).toMatch(/file descriptor 2: that is stderr/);

      const both = path.join(work, "ca-pem.json");
      fs.writeFileSync(both, JSON.stringify({ kbs: { ca_pem: pki.caPem } }));
      const r = await runCli([
        "fetch",
        "default/key/root",
        "--kbs",
        kbs.url,
        "--ca",
        pki.caFile,
        "--tee",
        "sample",
        "--allow-sample",
        "--config",
        both,
      ]);
      expect(r.code, r.stderr).toBe(EXIT_CODES.config);
      expect(r.stderr).toMatch(/kbs\.ca_pem \(from file:.*\) and kbs\.ca_file \(from flags\) are both set/);
      expect(r.stdout.length).toBe(0);
      expect(kbs.stats.requests.auth).toBe(0);
    } finally {
      await kbs.close();
    }
  });

  it("ignores .env and bunfig.toml in the working directory (they could disable TLS checks or preload code)", async () => {
    const cwd = path.join(work, "hostile-cwd");
    fs.mkdirSync(cwd);
    const marker = path.join(work, "evil-ran");
    fs.writeFileSync(path.join(cwd, "evil.js"), `require("fs").writeFileSync(${JSON.stringify(marker)}, "x");`);
    fs.writeFileSync(path.join(cwd, "bunfig.toml"), 'preload = ["./evil.js"]\n');
    fs.writeFileSync(path.join(cwd, ".env"), "NODE_TLS_REJECT_UNAUTHORIZED=0\n");
    const kbs = await startTestKbs({ tls: pki.tls, resources: { "default/key/root": crypto.randomBytes(32) } });
    try {
      // Wrong CA: must still fail even though .env tries to switch verification off.
      const r = await runCli(
        ["fetch", "default/key/root", "--kbs", kbs.url, "--ca", pki.wrongCaFile, "--tee", "sample", "--allow-sample"],
        { cwd },
      );
      expect(r.code).toBe(EXIT_CODES.tls);
      expect(r.stdout.length).toBe(0);
      expect(fs.existsSync(marker)).toBe(false);
    } finally {
      await kbs.close();
    }
  });
});

describe.skipIf(!swtpmAvailable())("detect and evidence against swtpm", () => {
  let tpm: Swtpm;
  beforeAll(async () => {
    tpm = await startSwtpm();
  });
  afterAll(async () => {
    await tpm?.stop();
  });

  it("detect chooses the TPM, says why the others were passed over, and shows its EK certificates", async () => {
    const r = await runCli(["detect", "--tpm", tpm.spec, "--platform-root", work]);
    const out = r.stdout.toString();
    expect(r.code, r.stderr).toBe(0);
    expect(out).toMatch(/^\* tpm +tee=tpm/m);
    expect(out).toMatch(/^- snp +absent/m);
    expect(out).toMatch(/sample.*\n.*passed over: insecure/);
    expect(out).toMatch(/EK.*certificate at 0x01c0000[2a]: subject/i);
  });

  it("a TD without its driver is broken: detect and evidence refuse to fall back to the working TPM", async () => {
    const td = fs.mkdtempSync(path.join(work, "td-"));
    fs.mkdirSync(path.join(td, "proc"));
    fs.writeFileSync(path.join(td, "proc/cpuinfo"), "processor\t: 0\nflags\t\t: fpu tsc tdx_guest x2apic\n");
    const r = await runCli(["detect", "--tpm", tpm.spec, "--platform-root", td, "--json"]);
    expect(r.code, r.stderr).toBe(EXIT_CODES.platform);
    const out = JSON.parse(r.stdout.toString()) as {
      chosen: unknown;
      candidates: { source: string; status: string; present: boolean; why: string; hint: string | null }[];
    };
    const by = Object.fromEntries(out.candidates.map((c) => [c.source, c]));
    expect(out.chosen).toBeNull();
    expect(by.tdx).toMatchObject({ status: "broken", present: false, hint: expect.stringMatching(/tdx-guest/) });
    expect(by.tpm).toMatchObject({ status: "present", present: true, why: expect.stringMatching(/tdx is broken/) });
    const ev = await runCli(["evidence", "--tpm", tpm.spec, "--platform-root", td, "--nonce", "AAAA"]);
    expect(ev.code).toBe(EXIT_CODES.platform);
    expect(ev.stderr.toString()).toMatch(/tdx: this is a TDX guest \(cpu flag tdx_guest\) but the tdx-guest driver/);
    // The operator can still choose the TPM explicitly (a trusted-config decision, not a host's).
    const forced = await runCli(["detect", "--tpm", tpm.spec, "--platform-root", td, "--tee", "tpm"]);
    expect(forced.code, forced.stderr).toBe(0);
    expect(forced.stdout.toString()).toMatch(/^! tdx +broken: /m);
  });

  it("evidence prints trustee's /attest body bound to the nonce, and --out keeps a CBOR record", async () => {
    const rec = path.join(work, "evidence.cbor");
    const nonce = crypto.randomBytes(32).toString("base64");
    const r = await runCli(["evidence", "--tpm", tpm.spec, "--platform-root", work, "--nonce", nonce, "--out", rec]);
    expect(r.code, r.stderr).toBe(0);
    const out = JSON.parse(r.stdout.toString());
    expect(out.tee).toBe("tpm");
    expect(Object.keys(out.attestation)).toEqual(["init-data", "runtime-data", "tee-evidence"]);
    expect(out.attestation["runtime-data"].nonce).toBe(nonce);
    expect(Object.keys(out.attestation["runtime-data"]["tee-pubkey"]).sort()).toEqual(["alg", "crv", "kty", "x", "y"]);
    expect(out.attestation["tee-evidence"].additional_evidence).toBe("");
    const ev = out.attestation["tee-evidence"].primary_evidence;
    expect(ev.tpm_quote.pcrs).toHaveLength(24);
    expect(fromB64(ev.ak_public).length).toBeGreaterThan(256);
    const record = decodeEvidenceRecord(new Uint8Array(fs.readFileSync(rec)));
    expect(record.tee).toBe("tpm");
    expect(JSON.parse(record.attestation)).toEqual(out.attestation);
    expect(record.digest).toHaveLength(48);
  });

  it("evidence --decode explains the binding for people", async () => {
    const r = await runCli(["evidence", "--tpm", tpm.spec, "--platform-root", work, "--decode"]);
    expect(r.code, r.stderr).toBe(0);
    const out = r.stdout.toString();
    expect(out).toMatch(/runtime digest: +[0-9a-f]{96}/);
    expect(out).toMatch(/bound as: +[0-9a-f]{64}\n/);
    expect(out).toMatch(/manufacturer IBM/);
  });
});
