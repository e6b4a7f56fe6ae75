// The main job on embedded defaults (`bash .ci/demo`): an emulated TPM (swtpm) and the local test
// KBS over HTTPS with a private CA; dist/cvm-unlock detects the TPM, attests, fetches a secret and
// prints its phase timeline. Then the KBS policy is switched to deny to show a fail-closed refusal.
// The secret itself is never printed: only a fingerprint compared with what the KBS holds.
import { createHash, randomFillSync } from "node:crypto";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { BINARY, runCli } from "../helpers/binary.ts";
import { createPki } from "../helpers/pki.ts";
import { startSwtpm } from "../helpers/swtpm.ts";
import { startTestKbs } from "../kbs/server.ts";

const fingerprint = (b: Uint8Array) => createHash("sha256").update(b).digest("hex").slice(0, 16);
const say = (s: string) => process.stdout.write(s + "\n");

async function main(): Promise<number> {
  const work = fs.mkdtempSync(path.join(os.tmpdir(), "cvm-demo-"));
  const pki = createPki();
  const secret = randomFillSync(Buffer.alloc(32));
  const tpm = await startSwtpm();
  const kbs = await startTestKbs({ tls: pki.tls, resources: { "default/key/root": secret }, allowTees: ["tpm"] });
  try {
    const common = ["--tpm", tpm.spec, "--kbs", kbs.url, "--ca", pki.caFile];
    say(`emulated TPM: swtpm on ${tpm.spec}; test KBS: ${kbs.url} (private CA ${pki.caFile})\n`);

    say("$ cvm-unlock detect");
    const det = await runCli(["detect", ...common]);
    process.stdout.write(det.stdout.toString());
    if (det.code !== 0) throw new Error(`detect failed (${det.code}): ${det.stderr}`);

    const timings = path.join(work, "timings.json");
    say("\n$ cvm-unlock fetch default/key/root --out-fd 3");
    const run = await runCli(
      ["fetch", "default/key/root", ...common, "--out-fd", "3", "--timings-json", timings, "--log-format", "text"],
      { extraFds: 1 },
    );
    process.stdout.write(run.stderr.replace(/^/gm, "  "));
    if (run.code !== 0) throw new Error(`fetch failed with exit code ${run.code}`);
    const got = run.fds[0]!;
    const ok = got.equals(secret);
    say(
      `secret: ${got.length} bytes, sha256 ${fingerprint(got)}… ${ok ? "matches" : "DOES NOT MATCH"} the KBS resource (${fingerprint(secret)}…)`,
    );
    got.fill(0);
    const t = JSON.parse(fs.readFileSync(timings, "utf8")) as {
      phases: { phase: string; ms: number; detail?: string }[];
      total_ms: number;
    };
    say("\nphase timeline (ms):");
    const w = Math.max(...t.phases.map((p) => p.phase.length), 5);
    for (const p of t.phases)
      say(`  ${p.phase.padEnd(w)} ${p.ms.toFixed(1).padStart(8)}${p.detail ? `   (${p.detail})` : ""}`);
    say(
      `  ${"total".padEnd(w)} ${t.total_ms.toFixed(1).padStart(8)}   (in-process; wall ${run.durationMs.toFixed(0)} ms incl. startup)`,
    );
    if (!ok) return 1;

    say("\n$ (KBS resource policy set to deny) cvm-unlock fetch default/key/root");
    kbs.setPolicy("deny");
    const denied = await runCli(["fetch", "default/key/root", ...common, "--out-fd", "3", "--log-format", "text"], {
      extraFds: 1,
    });
    process.stdout.write(denied.stderr.replace(/^/gm, "  "));
    say(`exit code ${denied.code}; ${denied.fds[0]!.length} bytes written`);
    if (denied.code === 0 || denied.fds[0]!.length !== 0) return 1;
    say(`\ndemo OK (${path.relative(process.cwd(), BINARY)})`);
    return 0;
  } finally {
    await kbs.close();
    await tpm.stop();
    fs.rmSync(pki.dir, { recursive: true, force: true });
    fs.rmSync(work, { recursive: true, force: true });
  }
}

main().then(
  (code) => process.exit(code),
  (e) => {
    process.stderr.write(`demo failed: ${(e as Error).message}\n`);
    process.exit(1);
  },
);
