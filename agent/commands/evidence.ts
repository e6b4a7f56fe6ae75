// `cvm-unlock evidence`: collect evidence for a nonce (as a KBS challenge would give it) and print
// the trustee /attest body; `--decode` summarises it for people; `--out FILE` keeps a CBOR record.
import { randomFillSync } from "node:crypto";
import * as fs from "node:fs";
import { b64, hex } from "../../platform/util/bytes.ts";
import { CvmError } from "../../platform/util/errors.ts";
import { optBool, optString } from "../cli/args.ts";
import type { Command } from "../cli/command.ts";
import { configOptions, runContext } from "../cli/common.ts";
import { describeEvidence, describePlatform } from "../describe.ts";
import { encodeEvidenceRecord } from "../evidence-record.ts";
import { reportDataFor, runtimeDigest } from "../kbs/runtime-data.ts";
import { generateTeeKey } from "../kbs/tee-key.ts";
import { selectSource } from "../select.ts";
import { evidenceSources } from "../../platform/registry.ts";
import { Timeline } from "../timeline.ts";
import { reportTimeline, timingOptions } from "../cli/timings.ts";

const MAX_NONCE = 1024;

export const evidenceCommand: Command = {
  name: "evidence",
  usage: "evidence [options] [--nonce NONCE]",
  description:
    "Without --nonce a random 32-byte nonce is used, as a KBS would issue. The tee-pubkey is a fresh\n" +
    "ephemeral key (kbs.tee_key). The output is the exact JSON body `fetch` would POST to /kbs/v0/attest.",
  options: [
    ...configOptions,
    { name: "nonce", kind: "string", value: "NONCE", help: "challenge nonce, verbatim (default: random, base64)" },
    { name: "decode", kind: "bool", help: "print a summary for people instead of JSON" },
    { name: "out", kind: "string", value: "FILE", help: "also write a CBOR evidence record to FILE" },
    ...timingOptions,
  ],
  async run(args, io) {
    const timeline = new Timeline();
    const ctx = runContext(args, io.log);
    try {
      let nonce = optString(args, "nonce");
      if (nonce === undefined) nonce = b64(randomFillSync(new Uint8Array(32)));
      if (nonce.length === 0 || nonce.length > MAX_NONCE)
        throw new CvmError("usage", `--nonce must be 1..${MAX_NONCE} characters`);
      const { source, tee } = await timeline.time("detect", () =>
        selectSource(ctx.env, ctx.config.platform, evidenceSources),
      );
      const key = await generateTeeKey(ctx.config.kbs.tee_key);
      const runtime = { nonce, "tee-pubkey": key.publicJwk };
      const digest = runtimeDigest(runtime);
      const ev = await timeline.time("evidence", () => source.collect(ctx.env, { runtimeDigest: digest, tee }));
      const body = {
        "init-data": null,
        "runtime-data": runtime,
        "tee-evidence": { primary_evidence: ev.primary, additional_evidence: "" },
      };
      const text = JSON.stringify(body);
      const out = optString(args, "out");
      if (out !== undefined)
        fs.writeFileSync(
          out,
          encodeEvidenceRecord({ tee, attestation: text, digest, created: new Date().toISOString() }),
        );
      if (optBool(args, "decode")) {
        const details = [...(await describeEvidence(ev)), ...(await describePlatform(ctx.env, source))];
        io.stdout.write(
          describe(tee, source.id, nonce, digest, ev.primary) +
            (details.length ? `\n\n${details.join("\n")}` : "") +
            "\n",
        );
      } else io.stdout.write(JSON.stringify({ tee, attestation: body }, null, 2) + "\n");
      reportTimeline(args, timeline);
      return 0;
    } finally {
      ctx.deadline.dispose();
    }
  },
};

function describe(tee: string, source: string, nonce: string, digest: Uint8Array, primary: unknown): string {
  const lines = [
    `tee:              ${tee} (source ${source})`,
    `nonce:            ${nonce}`,
    `runtime digest:   ${hex(digest)} (SHA-384 of JCS runtime data)`,
    `bound as:         ${hex(reportDataFor(tee as Parameters<typeof reportDataFor>[0], digest))}`,
    `evidence members:`,
  ];
  if (primary && typeof primary === "object")
    for (const [k, v] of Object.entries(primary as Record<string, unknown>)) {
      const size =
        typeof v === "string"
          ? `${v.length} chars`
          : Array.isArray(v)
            ? `${v.length} items`
            : v === null
              ? "null"
              : typeof v;
      lines.push(`  ${k.padEnd(20)} ${size}`);
    }
  lines.push("Decode a raw report, quote or event log with `cvm-unlock inspect FILE`.");
  return lines.join("\n");
}
