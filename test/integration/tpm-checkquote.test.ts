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
import { collectTpmEvidence, spkiPem, withTpm, type TpmEvidence } from "../../platform/tpm/index.ts";
import { startSwtpm, type Swtpm } from "../helpers/swtpm.ts";

let sw: Swtpm;
let evidence: TpmEvidence;
const digest = new Uint8Array(createHash("sha384").update("checkquote").digest());
const nonce = hex(digest.subarray(0, 32));
const ALL = "sha256:" + Array.from({ length: 24 }, (_, i) => i).join(",");

beforeAll(async () => {
  sw = await startSwtpm();
  const deadline = new Deadline(60_000);
  try {
    evidence = (await withTpm(sw.spec, deadline, silentLogger, (tpm) => collectTpmEvidence(tpm, digest, 0x81010002))).evidence;
  } finally {
    deadline.dispose();
  }
});

afterAll(async () => {
  await sw?.stop();
});

/** Write the evidence in the files tpm2_checkquote reads and run it. */
function checkquote(pcrs: string[], qualification: string): { status: number | null; out: string } {
  const dir = fs.mkdtempSync(path.join(sw.dir, "cq-"));
  const der = fromB64(evidence.ak_public);
  fs.writeFileSync(path.join(dir, "ak.pem"), spkiPem(der));
  fs.writeFileSync(path.join(dir, "quote.msg"), fromB64(evidence.tpm_quote.message));
  fs.writeFileSync(path.join(dir, "quote.sig"), fromB64(evidence.tpm_quote.signature)); // TPMT_SIGNATURE = tss format
  fs.writeFileSync(path.join(dir, "pcrs.bin"), Buffer.concat(pcrs.map((p) => Buffer.from(fromHex(p)))));
  const r = spawnSync(
    "tpm2_checkquote",
    ["-u", path.join(dir, "ak.pem"), "-m", path.join(dir, "quote.msg"), "-s", path.join(dir, "quote.sig"), "-f", path.join(dir, "pcrs.bin"), "-l", ALL, "-g", "sha256", "-q", qualification],
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
    expect(checkquote(pcrs, nonce).status).not.toBe(0);
  });

  it("rejects another nonce", () => {
    expect(checkquote(evidence.tpm_quote.pcrs, "00".repeat(32)).status).not.toBe(0);
  });
});
