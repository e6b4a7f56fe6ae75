// `cvm-unlock reference` (the compiled binary) against independent tools: PCR 11 against Debian's
// systemd-measure for a UKI built with objcopy from Debian's systemd-stub; the Authenticode hash
// against osslsigncode; PCR 4 from an event log whose UKI events are replaced by the next UKI's.
import { execFileSync, spawnSync } from "node:child_process";
import * as crypto from "node:crypto";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { readPcrValues } from "../../agent/provision/pcr-values.ts";
import { buildResourcePolicy, parsePolicyTemplate } from "../../agent/provision/policy-template.ts";
import { authenticodeSha256, parsePe } from "../../agent/reference/pe.ts";
import { TPM_ALG_SHA256 } from "../../platform/eventlog/algorithms.ts";
import { encodeEventLog } from "../../platform/eventlog/encode.ts";
import { ensureBinary, runCli } from "../helpers/binary.ts";
import { createPki } from "../helpers/pki.ts";
import { toolsAvailable } from "../helpers/tools.ts";

const STUB = "/usr/lib/systemd/boot/efi/linuxx64.efi.stub";
const MEASURE = ["/usr/lib/systemd/systemd-measure", "/lib/systemd/systemd-measure"].find((p) => fs.existsSync(p));
const have = fs.existsSync(STUB) && MEASURE !== undefined && toolsAvailable("objcopy");
let work: string;

/** A UKI the way ukify's objcopy recipe builds one; the .linux payload is itself a PE (the stub). */
function buildUki(name: string, cmdline: string): { file: string; parts: Record<string, string> } {
  const dir = path.join(work, name);
  fs.mkdirSync(dir);
  const parts = {
    linux: STUB,
    osrel: path.join(dir, "osrel"),
    cmdline: path.join(dir, "cmdline"),
    initrd: path.join(dir, "initrd"),
  };
  fs.writeFileSync(parts.osrel, "ID=cvm-test\n");
  fs.writeFileSync(parts.cmdline, cmdline);
  fs.writeFileSync(parts.initrd, crypto.randomBytes(50_000));
  const file = path.join(dir, "uki.efi");
  const vma: Record<string, string> = { osrel: "0x20000", cmdline: "0x30000", linux: "0x2000000", initrd: "0x3000000" };
  execFileSync("objcopy", [
    ...Object.entries(parts).flatMap(([k, f]) => [
      "--add-section",
      `.${k}=${f}`,
      "--change-section-vma",
      `.${k}=${vma[k]}`,
    ]),
    STUB,
    file,
  ]);
  return { file, parts };
}

function systemdMeasure(parts: Record<string, string>, phases: string[]): string {
  const out = execFileSync(MEASURE!, [
    "calculate",
    ...Object.entries(parts).map(([k, f]) => `--${k}=${f}`),
    "--bank=sha256",
    `--phase=${phases.join(":")}`,
  ]).toString();
  return /11:sha256=([0-9a-f]{64})/.exec(out)![1]!;
}

const authenticode = (file: string) => authenticodeSha256(parsePe(new Uint8Array(fs.readFileSync(file))));
const extendAll = (digests: Uint8Array[]) =>
  digests.reduce<Buffer>((pcr, d) => crypto.createHash("sha256").update(pcr).update(d).digest(), Buffer.alloc(32));

beforeAll(() => {
  if (!have) return;
  ensureBinary();
  work = fs.mkdtempSync(path.join(os.tmpdir(), "reference-it-"));
});
afterAll(() => {
  if (work) fs.rmSync(work, { recursive: true, force: true });
});

describe.skipIf(!have)("cvm-unlock reference", () => {
  it("PCR 11 equals systemd-measure's for the same sections, for one phase and for several", async () => {
    const uki = buildUki("a", "root=UUID=1234 ro quiet");
    for (const phases of [["enter-initrd"], ["enter-initrd", "leave-initrd"]]) {
      const r = await runCli([
        "reference",
        "--uki",
        uki.file,
        "--format",
        "pcr-values",
        ...phases.flatMap((p) => ["--phase", p]),
      ]);
      expect(r.code, r.stderr).toBe(0);
      // PCR 12: nothing from outside the UKI (no loader command line, no credentials) leaves it at zero
      expect(JSON.parse(r.stdout.toString())).toEqual({
        pcr11: [systemdMeasure(uki.parts, phases)],
        pcr12: ["0".repeat(64)],
      });
    }
  });

  it.skipIf(!toolsAvailable("osslsigncode"))("the Authenticode hash equals osslsigncode's for a signed image", () => {
    const pki = createPki({ dir: path.join(work, "pki") });
    const signed = path.join(work, "signed.efi");
    execFileSync(
      "osslsigncode",
      ["sign", "-certs", pki.serverCertFile, "-key", pki.serverKeyFile, "-in", STUB, "-out", signed],
      {
        stdio: "pipe",
      },
    );
    const out = spawnSync("osslsigncode", ["verify", "-in", signed]).stdout.toString();
    const theirs = /Current message digest\s*:\s*([0-9A-F]{64})/.exec(out)![1]!.toLowerCase();
    expect(Buffer.from(authenticode(signed)).toString("hex")).toBe(theirs);
    // (The unsigned stub hashes differently: signing pads the file to 8 bytes, and the padding is hashed.)
  });

  it("with an event log: PCR 4 replays with the next UKI's hash; current and next values both accepted (RVPS sample)", async () => {
    const cur = buildUki("cur", "root=UUID=1234 ro");
    const next = buildUki("next", "root=UUID=1234 ro quiet");
    const sha = (b: Uint8Array | string) => crypto.createHash("sha256").update(b).digest();
    const ev = (index: number, type: number, digest: Uint8Array, data = "") => ({
      index,
      type,
      digests: new Map([[TPM_ALG_SHA256, new Uint8Array(digest)]]),
      data: new TextEncoder().encode(data),
    });
    const separator = sha(Buffer.alloc(4));
    const fw = sha("firmware");
    const stubEvents = (parts: Record<string, string>) =>
      ["linux", "osrel", "cmdline", "initrd"].flatMap((k) => [sha(`.${k}\0`), sha(fs.readFileSync(parts[k]!))]);
    const log = encodeEventLog(
      {
        platformClass: 0,
        specErrata: 0,
        uintnSize: 2,
        algorithms: [{ id: TPM_ALG_SHA256, name: "sha256", size: 32 }],
        vendorInfo: new Uint8Array(),
      },
      [
        ev(4, 0x80000008, fw), // EV_EFI_ACTION
        ev(7, 0x800000e0, sha("db cert")), // EV_EFI_VARIABLE_AUTHORITY
        ev(4, 4, separator),
        ev(7, 4, separator),
        ev(4, 0x80000003, authenticode(cur.file)), // the UKI
        ev(4, 0x80000003, authenticode(STUB)), // the kernel PE from .linux
        ...stubEvents(cur.parts).map((d) => ev(11, 0x0d, d)), // EV_IPL
        ev(12, 0x0d, sha("credential")), // systemd-stub: something from outside the UKI
      ],
    );
    const logFile = path.join(work, "binary_bios_measurements");
    fs.writeFileSync(logFile, log);
    const r = await runCli(["reference", "--uki", next.file, "--current-uki", cur.file, "--event-log", logFile]);
    expect(r.code, r.stderr).toBe(0);
    const msg = JSON.parse(r.stdout.toString());
    expect(Object.keys(msg)).toEqual(["version", "type", "payload"]);
    expect(msg).toMatchObject({ version: "0.1.0", type: "sample" });
    const values = JSON.parse(Buffer.from(msg.payload, "base64").toString());
    const hex = (b: Uint8Array) => Buffer.from(b).toString("hex");
    expect(values).toEqual({
      tpm_pcr04: [
        hex(extendAll([fw, separator, authenticode(cur.file), authenticode(STUB)])),
        hex(extendAll([fw, separator, authenticode(next.file), authenticode(STUB)])),
      ],
      tpm_pcr07: [hex(extendAll([sha("db cert"), separator]))],
      tpm_pcr11: [systemdMeasure(cur.parts, ["enter-initrd"]), systemdMeasure(next.parts, ["enter-initrd"])],
      tpm_pcr12: [hex(extendAll([sha("credential")]))],
    });

    // the same values as bind --pcr-values JSON make a tpm-pcrs policy that covers the command line
    const pv = await runCli([
      "reference",
      "--uki",
      next.file,
      "--current-uki",
      cur.file,
      "--event-log",
      logFile,
      "--format",
      "pcr-values",
    ]);
    expect(pv.code, pv.stderr).toBe(0);
    const pvFile = path.join(work, "reference-pcrs.json");
    fs.writeFileSync(pvFile, pv.stdout);
    const policy = buildResourcePolicy(
      "default/key/root",
      [parsePolicyTemplate("tpm-pcrs=4,7,11,12")],
      readPcrValues(pvFile),
    );
    expect(policy).toContain(hex(extendAll([sha("credential")])));
    for (const v of [...values.tpm_pcr04, ...values.tpm_pcr07, ...values.tpm_pcr11]) expect(policy).toContain(v);
  });

  it("an event log of another UKI is refused (nothing to replace in PCR 4)", async () => {
    const a = buildUki("other-a", "x");
    const b = buildUki("other-b", "y");
    const logFile = path.join(work, "empty-log");
    fs.writeFileSync(
      logFile,
      encodeEventLog(
        {
          platformClass: 0,
          specErrata: 0,
          uintnSize: 2,
          algorithms: [{ id: TPM_ALG_SHA256, name: "sha256", size: 32 }],
          vendorInfo: new Uint8Array(),
        },
        [{ index: 4, type: 4, digests: new Map([[TPM_ALG_SHA256, new Uint8Array(32)]]), data: new Uint8Array(4) }],
      ),
    );
    const r = await runCli(["reference", "--uki", b.file, "--current-uki", a.file, "--event-log", logFile]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/no PCR 4 event of the event log is the --current-uki/);
  });
});
