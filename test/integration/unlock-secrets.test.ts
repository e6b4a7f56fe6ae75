// Secret hygiene of the compiled agent, observed from outside with strace: the disk key reaches
// exactly one place — cryptsetup's stdin — and appears in no other write, no file, no output, and
// no child argv/environment. The KBS speaks plain HTTP here on purpose: the worst case for leaks
// (there is no TLS layer that would hide a plaintext key on the wire).
import { spawnSync } from "node:child_process";
import * as crypto from "node:crypto";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { BINARY, ensureBinary, runCli } from "../helpers/binary.ts";
import { startTestKbs, type TestKbs } from "../kbs/server.ts";
import { toolsAvailable } from "../helpers/tools.ts";
import { secretSightings, STRACE_ARGS } from "../helpers/strace.ts";
import { cryptsetupAvailable, makeLuksImage, type LuksImage } from "../unit/unlock/luks-image.ts";

const have = cryptsetupAvailable() && toolsAvailable("strace");
let work: string;
let kbs: TestKbs;
let img: LuksImage;

beforeAll(async () => {
  if (!have) return;
  ensureBinary();
  work = fs.mkdtempSync(path.join(os.tmpdir(), "unlock-strace-"));
  img = makeLuksImage(work, "disk.img");
  kbs = await startTestKbs({
    resources: {
      "default/key/root": img.key,
      "default/key/doc": JSON.stringify({
        cvm_unlock_key: 1,
        key: img.key.toString("base64"),
        pins: { uuid: img.uuid },
      }),
    },
  });
});
afterAll(async () => {
  await kbs?.close();
  if (work) fs.rmSync(work, { recursive: true, force: true });
});

describe.skipIf(!have)("secret hygiene under strace", () => {
  it.each(["default/key/root", "default/key/doc"])(
    "the key (resource %s) is written only to cryptsetup's stdin",
    async (resource) => {
      const cfg = path.join(work, "config.json");
      fs.writeFileSync(
        cfg,
        JSON.stringify({
          platform: { tee: "sample", allow_sample: true },
          kbs: { insecure_http: true, endpoints: [kbs.url] },
        }),
      );
      const trace = path.join(work, `strace-${resource.replace(/\//g, "_")}.txt`);
      const r = await runCli(
        [
          ...STRACE_ARGS,
          "-o",
          trace,
          BINARY,
          "unlock",
          "--test-only",
          "--config",
          cfg,
          "--device",
          img.file,
          "--resource",
          resource,
          "--log-format",
          "text",
          "--verbose",
        ],
        { binary: "strace", timeoutMs: 90_000 },
      );
      expect(r.code, r.stderr).toBe(0);
      expect(r.stdout.toString()).toMatch(/key-verified/);

      const forms = [
        img.key,
        Buffer.from(img.key.toString("hex")),
        Buffer.from(img.key.toString("base64")),
        Buffer.from(img.key.toString("base64url")),
      ];
      const { hits, execs } = secretSightings(trace, forms);
      const cryptsetupPid = [...execs].find(([, p]) => p.endsWith("/cryptsetup"))?.[0];
      expect(cryptsetupPid, "cryptsetup was executed").toBeDefined();
      // Exactly two sightings: the agent's one write into the stdin channel, and cryptsetup reading fd 0.
      expect(hits.length, JSON.stringify(hits, null, 1)).toBe(2);
      const w = hits.find((h) => h.syscall !== "read")!;
      const rd = hits.find((h) => h.syscall === "read")!;
      expect(w.syscall).toMatch(/^(write|sendto|writev|sendmsg)$/);
      expect(rd.pid).toBe(cryptsetupPid);
      expect(rd.line).toMatch(/^\d+\s+read\(0</);
      expect(w.pid).not.toBe(cryptsetupPid);
      // The writer's fd is the other end of cryptsetup's stdin (a socketpair or a pipe), never a file or the network.
      const pair = /^UNIX-STREAM:\[(\d+)->(\d+)\]$/.exec(w.fd);
      if (pair) expect(rd.fd).toBe(`UNIX-STREAM:[${pair[2]}]`);
      else (expect(w.fd).toMatch(/^pipe:\[\d+\]$/), expect(rd.fd).toBe(w.fd));
      // argv/env of every exec are clean (decoded strings were searched above: no execve hit).
      expect(hits.some((h) => h.syscall === "execve")).toBe(false);
      // Nothing on the agent's own stdout/stderr either.
      for (const f of forms) {
        expect(r.stdout.includes(f)).toBe(false);
        expect(Buffer.from(r.stderr).includes(f)).toBe(false);
      }
      // The plaintext key never crossed the network (the KBS sent a JWE).
      expect(hits.some((h) => /TCP/.test(h.fd))).toBe(false);
    },
  );
});
