// Faults around the KBS exchange that only the compiled binary can show: signals and deadline
// expiry at each phase, cryptsetup missing / failing / killed, and a full disk for the /run state.
// Every failure must be closed: the documented exit code, nothing on stdout, no secret on stderr.
// docs/RELIABILITY.md cites these tests by name.
import { execFileSync } from "node:child_process";
import * as crypto from "node:crypto";
import * as fs from "node:fs";
import * as net from "node:net";
import * as os from "node:os";
import * as path from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { EXIT_CODES } from "../../platform/util/errors.ts";
import { ensureBinary, runCli, type RunResult } from "../helpers/binary.ts";
import { createPki, type Pki } from "../helpers/pki.ts";
import { startTestKbs, type Endpoint, type TestKbs } from "../kbs/server.ts";
import { cryptsetupAvailable, makeLuksImage, type LuksImage } from "../unit/unlock/luks-image.ts";

const RESOURCE = "default/key/root";
const PHASES: Endpoint[] = ["auth", "attest", "resource"];
let pki: Pki;
let work: string;
let kbs: TestKbs | undefined;
let image: LuksImage | undefined;

beforeAll(() => {
  ensureBinary();
  work = fs.mkdtempSync(path.join(os.tmpdir(), "faults-it-"));
  pki = createPki({ dir: path.join(work, "pki") });
  if (cryptsetupAvailable()) image = makeLuksImage(work, "a.img");
});
afterEach(async () => {
  await kbs?.close();
  kbs = undefined;
});
afterAll(() => fs.rmSync(work, { recursive: true, force: true }));

async function start(secret: Uint8Array, faults: Parameters<typeof startTestKbs>[0] = {}): Promise<TestKbs> {
  kbs = await startTestKbs({ tls: pki.tls, resources: { [RESOURCE]: secret }, ...faults });
  return kbs;
}

function fetchArgs(extra: string[] = []): string[] {
  return ["fetch", RESOURCE, "--kbs", kbs!.url, "--ca", pki.caFile, "--tee", "sample", "--allow-sample", ...extra];
}

function expectClosed(r: RunResult, code: number, secret: Uint8Array): void {
  expect(r.timedOut, r.stderr).toBe(false);
  expect(r.code, r.stderr).toBe(code);
  expect(r.stdout.length, "nothing on stdout").toBe(0);
  expect(r.stderr.includes(Buffer.from(secret).toString("hex"))).toBe(false);
  expect(r.stderr.includes(Buffer.from(secret).toString("base64"))).toBe(false);
}

/** A stand-in cryptsetup (a shell script) for the faults real cryptsetup cannot be made to show. */
function fakeCryptsetup(name: string, body: string): string {
  const p = path.join(work, name);
  fs.writeFileSync(p, `#!/bin/sh\n${body}\n`, { mode: 0o755 });
  return p;
}

function unlockConfig(unlock: Record<string, unknown>): string {
  const file = path.join(work, `config-${crypto.randomBytes(4).toString("hex")}.json`);
  fs.writeFileSync(
    file,
    JSON.stringify({
      kbs: { endpoints: [kbs!.url], ca_file: pki.caFile, request_timeout_s: 10 },
      platform: { tee: "sample", allow_sample: true },
      unlock: {
        device_timeout_s: 2,
        measure: { tpm: "off", rtmr_mode: "off", record_path: path.join(work, "run", "measurements.cbor") },
        ...unlock,
      },
    }),
  );
  return file;
}

describe("signals and deadline at each KBS phase", () => {
  for (const phase of PHASES) {
    it(`SIGTERM while waiting for ${phase}: exit 143, nothing on stdout`, async () => {
      const secret = crypto.randomBytes(32);
      const k = await start(secret, { faults: { delayMs: { [phase]: 10_000 } } });
      const r = await runCli(fetchArgs(), {
        timeoutMs: 30_000,
        onSpawn: (child) => {
          const poll = setInterval(() => {
            if (k.stats.requests[phase] > 0) (clearInterval(poll), child.kill("SIGTERM"));
          }, 20);
          child.once("exit", () => clearInterval(poll));
        },
      });
      expect(r.signal ?? r.code).not.toBe(0);
      expectClosed(r, 143, secret);
      expect(r.durationMs).toBeLessThan(8_000);
    });

    it(`deadline expiry during ${phase}: exit 12 naming the phase, within the deadline`, async () => {
      const secret = crypto.randomBytes(32);
      await start(secret, { faults: { delayMs: { [phase]: 20_000 } } });
      const r = await runCli(fetchArgs(["--deadline", "3"]), { timeoutMs: 30_000 });
      expectClosed(r, EXIT_CODES.deadline, secret);
      expect(r.stderr).toMatch(new RegExp(`deadline of 3s exceeded.*\\(${phase}\\)`));
      expect(r.durationMs).toBeLessThan(3_000 + 3_000);
    });
  }
});

describe("a KBS address that accepts TCP and never completes TLS", () => {
  it("deadline expiry in the TLS handshake: exit 12 within the deadline (not the request timeout)", async () => {
    const sockets: net.Socket[] = [];
    const silent = net.createServer((s) => sockets.push(s));
    await new Promise<void>((resolve) => silent.listen(0, "127.0.0.1", resolve));
    try {
      const url = `https://127.0.0.1:${(silent.address() as net.AddressInfo).port}`;
      const r = await runCli(
        ["fetch", RESOURCE, "--kbs", url, "--ca", pki.caFile, "--tee", "sample", "--allow-sample", "--deadline", "3"],
        { timeoutMs: 30_000 },
      );
      expect(r.code, r.stderr).toBe(EXIT_CODES.deadline);
      expect(r.stderr).toMatch(/deadline of 3s exceeded/);
      // before the fix the run waited for the whole request timeout (15 s) in the handshake
      expect(r.durationMs).toBeLessThan(3_000 + 3_000);
    } finally {
      for (const s of sockets) s.destroy();
      silent.close();
    }
  });
});

describe.skipIf(!cryptsetupAvailable())("cryptsetup and the /run state", () => {
  const unlockTestOnly = (cfg: string) =>
    runCli(["unlock", "--test-only", "--config", cfg, "--device", image!.file, "--resource", RESOURCE], {
      timeoutMs: 30_000,
    });

  it("cryptsetup missing: exit 13 naming the binary, key not handed anywhere", async () => {
    await start(image!.key);
    const r = await unlockTestOnly(unlockConfig({ cryptsetup: path.join(work, "no-such-cryptsetup") }));
    expectClosed(r, EXIT_CODES.unlock, image!.key);
    expect(r.stderr).toMatch(/no-such-cryptsetup/);
  });

  it("cryptsetup failing (exit 1): exit 13 with its message", async () => {
    await start(image!.key);
    const cs = fakeCryptsetup("cs-fail", 'cat >/dev/null; echo "Device or resource busy" >&2; exit 1');
    const r = await unlockTestOnly(unlockConfig({ cryptsetup: cs }));
    expectClosed(r, EXIT_CODES.unlock, image!.key);
    expect(r.stderr).toMatch(/Device or resource busy/);
  });

  it("cryptsetup killed by a signal: exit 13 naming the signal", async () => {
    await start(image!.key);
    const cs = fakeCryptsetup("cs-killed", "kill -9 $$");
    const r = await unlockTestOnly(unlockConfig({ cryptsetup: cs }));
    expectClosed(r, EXIT_CODES.unlock, image!.key);
    expect(r.stderr).toMatch(/killed by SIGKILL/);
  });

  it("SIGTERM while cryptsetup runs: exit 143, nothing on stdout", async () => {
    await start(image!.key);
    const marker = path.join(work, "cs-started");
    const cs = fakeCryptsetup("cs-slow", `touch ${marker}; exec sleep 30`);
    const r = await runCli(
      [
        "unlock",
        "--test-only",
        "--config",
        unlockConfig({ cryptsetup: cs }),
        "--device",
        image!.file,
        "--resource",
        RESOURCE,
      ],
      {
        timeoutMs: 30_000,
        onSpawn: (child) => {
          const poll = setInterval(() => {
            if (fs.existsSync(marker)) (clearInterval(poll), child.kill("SIGTERM"));
          }, 20);
          child.once("exit", () => clearInterval(poll));
        },
      },
    );
    expectClosed(r, 143, image!.key);
  });

  it.skipIf(process.getuid?.() !== 0)(
    "disk full for the /run state (a full tmpfs): failed closed, exit 4 naming the file",
    async () => {
      await start(image!.key);
      const run = path.join(work, "run-full");
      fs.mkdirSync(run, { recursive: true });
      execFileSync("mount", ["-t", "tmpfs", "-o", "size=64k", "tmpfs", run]);
      try {
        try {
          fs.writeFileSync(path.join(run, "fill"), Buffer.alloc(256 * 1024));
        } catch {
          // ENOSPC: the tmpfs is full now, as intended
        }
        const cs = fakeCryptsetup("cs-opens", "cat >/dev/null; exit 0"); // "opens" the volume
        const cfg = unlockConfig({
          cryptsetup: cs,
          measure: { tpm: "off", rtmr_mode: "off", record_path: path.join(run, "measurements.cbor") },
        });
        const r = await runCli(["unlock", "--config", cfg, "--device", image!.file, "--resource", RESOURCE], {
          timeoutMs: 30_000,
        });
        expectClosed(r, EXIT_CODES.platform, image!.key);
        // The first /run write that no longer fits: the private header copy, or the opened-volumes state.
        expect(r.stderr).toMatch(
          /cannot (write the private header copy|record the opened volumes) in \S*\/run\S*: ENOSPC/,
        );
      } finally {
        execFileSync("umount", [run]);
      }
    },
  );
});
