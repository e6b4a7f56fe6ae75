// Cross-check: tpm2-tools' tpm2_checkquote (an independent TSS implementation) accepts the quote
// our evidence source produced on swtpm, and rejects it when a PCR or the nonce is altered.
import { spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import * as fs from "node:fs";
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Deadline } from "../../platform/util/deadline.ts";
import { silentLogger } from "../../platform/util/log.ts";
import { fromB64, fromHex, hex } from "../../platform/util/bytes.ts";
import { collectTpmEvidence, type TpmEvidence } from "../../platform/tpm/attestation/evidence.ts";
import { spkiPem } from "../../platform/tpm/attestation/keys.ts";
import { withTpm } from "../../platform/tpm/client.ts";
import { startSwtpm, type Swtpm } from "../helpers/swtpm.ts";

let sw: Swtpm;
let evidence: TpmEvidence;
const digest = new Uint8Array(createHash("sha384").update("checkquote").digest());
const nonce = hex(digest.subarray(0, 32));

beforeAll(async () => {
  sw = await startSwtpm();
  const deadline = new Deadline(60_000);
  try {
    evidence = (await withTpm(sw.spec, deadline, silentLogger, (tpm) => collectTpmEvidence(tpm, digest, 0x81010002)))
      .evidence;
  } finally {
    deadline.dispose();
  }
});

afterAll(async () => {
  await sw?.stop();
});

/**
 * tpm2-tools' PCR file as tpm2_quote -o writes it (a C struct dump, x86-64 little-endian):
 * TPML_PCR_SELECTION (u32 count + 16 x {u16 hash, u8 sizeofSelect, u8[4] select, pad}) = 132 bytes,
 * u32 number of TPML_DIGESTs, then each TPML_DIGEST (u32 count + 8 x {u16 size, u8[64]}) = 532 bytes.
 * (tpm2-tools 5.4's raw-values path `-f raw -l sha256:all` fails even on its own tpm2_pcrread output.)
 */
function tpm2ToolsPcrFile(pcrs: Uint8Array[]): Buffer {
  const sel = Buffer.alloc(132);
  sel.writeUInt32LE(1, 0);
  sel.writeUInt16LE(0x000b, 4);
  sel.writeUInt8(3, 6);
  sel.set([0xff, 0xff, 0xff], 7);
  const lists: Buffer[] = [];
  for (let i = 0; i < pcrs.length; i += 8) {
    const chunk = pcrs.slice(i, i + 8);
    const l = Buffer.alloc(532);
    l.writeUInt32LE(chunk.length, 0);
    chunk.forEach((d, j) => {
      l.writeUInt16LE(d.length, 4 + 66 * j);
      l.set(d, 4 + 66 * j + 2);
    });
    lists.push(l);
  }
  const n = Buffer.alloc(4);
  n.writeUInt32LE(lists.length, 0);
  return Buffer.concat([sel, n, ...lists]);
}

/** Write the evidence in the files tpm2_checkquote reads and run it. */
function checkquote(pcrs: string[], qualification: string): { status: number | null; out: string } {
  const dir = fs.mkdtempSync(path.join(sw.dir, "cq-"));
  const der = fromB64(evidence.ak_public);
  fs.writeFileSync(path.join(dir, "ak.pem"), spkiPem(der));
  fs.writeFileSync(path.join(dir, "quote.msg"), fromB64(evidence.tpm_quote.message));
  fs.writeFileSync(path.join(dir, "quote.sig"), fromB64(evidence.tpm_quote.signature)); // TPMT_SIGNATURE = tss format
  fs.writeFileSync(path.join(dir, "pcrs.bin"), tpm2ToolsPcrFile(pcrs.map((p) => fromHex(p))));
  const r = spawnSync(
    "tpm2_checkquote",
    [
      "-u",
      path.join(dir, "ak.pem"),
      "-m",
      path.join(dir, "quote.msg"),
      "-s",
      path.join(dir, "quote.sig"),
      "-f",
      path.join(dir, "pcrs.bin"),
      "-g",
      "sha256",
      "-q",
      qualification,
    ],
    { encoding: "utf8" },
  );
  return { status: r.status, out: `${r.stdout}${r.stderr}` };
}

describe("tpm2_checkquote", () => {
  it("accepts our quote, AK, PCRs and the first 32 bytes of the runtime digest", () => {
    const r = checkquote(evidence.tpm_quote.pcrs, nonce);
    expect(r.out).not.toMatch(/ERROR/);
    expect(r.status).toBe(0);
  });

  it("rejects a modified PCR value", () => {
    const pcrs = [...evidence.tpm_quote.pcrs];
    pcrs[0] = "11".repeat(32);
    const r = checkquote(pcrs, nonce);
    expect(r.status).not.toBe(0);
    expect(r.out).toMatch(/PCR/);
  });

  it("rejects another nonce", () => {
    const r = checkquote(evidence.tpm_quote.pcrs, "00".repeat(32));
    expect(r.status).not.toBe(0);
    expect(r.out).toMatch(/nonce/i);
  });
});
