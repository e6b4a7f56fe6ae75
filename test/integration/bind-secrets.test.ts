// Secret hygiene of `bind` under strace: the new key reaches cryptsetup only through a pipe or its
// stdin, and the KBS only through the upload (plain HTTP here, the worst case: nothing hides it);
// the existing passphrase only cryptsetup. No file, no argv/env, no stdout/stderr, and cryptsetup
// really reads the new key from a pipe (fd 3), not from a file.
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { BINARY, ensureBinary, runCli } from "../helpers/binary.ts";
import { secretSightings, STRACE_ARGS, type Hit } from "../helpers/strace.ts";
import { toolsAvailable } from "../helpers/tools.ts";
import { startTestKbs, type TestKbs } from "../kbs/server.ts";
import { cryptsetupAvailable, makeLuksImage } from "../unit/unlock/luks-image.ts";

const have = cryptsetupAvailable() && toolsAvailable("strace");
let work: string;
let kbs: TestKbs;

beforeAll(async () => {
  if (!have) return;
  ensureBinary();
  work = fs.mkdtempSync(path.join(os.tmpdir(), "bind-strace-"));
  kbs = await startTestKbs({ admin: { mode: "InsecureAllowAll" } });
});
afterAll(async () => {
  await kbs?.close();
  if (work) fs.rmSync(work, { recursive: true, force: true });
});

const formsOf = (k: Buffer) => [k, Buffer.from(k.toString("hex")), Buffer.from(k.toString("base64"))];

describe.skipIf(!have)("bind: secret hygiene under strace", () => {
  it("the new key goes to cryptsetup (pipe/stdin) and the KBS upload only; the old one to cryptsetup only", async () => {
    const img = makeLuksImage(work, "disk.img");
    const trace = path.join(work, "strace.txt");
    const r = await runCli(
      [
        ...STRACE_ARGS,
        "-o",
        trace,
        BINARY,
        "bind",
        img.file,
        "--kbs",
        kbs.url,
        "--insecure-http",
        "--admin-anonymous",
        "--resource",
        "default/key/root",
        "--unlock-key-file",
        "-",
        "--wipe-slot",
        "0",
        "--log-format",
        "text",
        "--verbose",
      ],
      { binary: "strace", input: img.key, timeoutMs: 120_000 },
    );
    expect(r.code, r.stderr).toBe(0);
    const newKey = Buffer.from(kbs.resources.get("default/key/root")!);
    expect(newKey).toHaveLength(64);

    const { hits, execs } = secretSightings(trace, formsOf(newKey));
    const cryptsetupPids = new Set([...execs].filter(([, p]) => p.endsWith("/cryptsetup")).map(([pid]) => pid));
    expect(cryptsetupPids.size).toBeGreaterThanOrEqual(3); // test, luksAddKey, luksKillSlot, test
    const isRead = (h: Hit) => /^(read|readv|recvfrom|recvmsg)$/.test(h.syscall);
    const reads = hits.filter(isRead);
    const writes = hits.filter((h) => !isRead(h));
    expect(
      hits.some((h) => h.syscall === "execve"),
      "no argv/env",
    ).toBe(false);
    // Readers: cryptsetup (the pipe it reopens as /dev/fd/3 for luksAddKey, its stdin otherwise) and the KBS (the upload).
    for (const h of reads)
      if (cryptsetupPids.has(h.pid)) expect(h.fd, h.line).toMatch(/^(pipe:\[\d+\]|UNIX-STREAM:\[\d+\])$/);
      else expect(h.fd, h.line).toMatch(/^TCP:\[127\.0\.0\.1:\d+->127\.0\.0\.1:\d+\]$/);
    expect(reads.some((h) => cryptsetupPids.has(h.pid) && h.fd.startsWith("pipe:"))).toBe(true);
    // Writers: the agent into pipes/socketpairs and the one TCP upload to the KBS port; never a file.
    for (const h of writes) {
      expect(cryptsetupPids.has(h.pid), h.line).toBe(false);
      expect(h.fd, h.line).toMatch(
        new RegExp(
          `^(pipe:\\[\\d+\\]|UNIX-STREAM:\\[\\d+->\\d+\\]|TCP:\\[127\\.0\\.0\\.1:\\d+->127\\.0\\.0\\.1:${kbs.port}\\]|TCP:\\[127\\.0\\.0\\.1:${kbs.port}->127\\.0\\.0\\.1:\\d+\\])$`,
        ),
      );
    }
    expect(
      writes.filter((h) => h.fd.startsWith("TCP:")),
      "one upload",
    ).toHaveLength(1);

    const old = secretSightings(trace, formsOf(img.key)).hits;
    for (const h of old)
      if (!cryptsetupPids.has(h.pid))
        expect(h.fd, h.line).toMatch(/^(pipe:\[\d+\]|UNIX-STREAM:\[\d+->\d+\]|UNIX-STREAM:\[\d+\])$/);
    for (const k of [newKey, img.key])
      for (const f of formsOf(k)) {
        expect(r.stdout.includes(f)).toBe(false);
        expect(Buffer.from(r.stderr).includes(f)).toBe(false);
      }
  });
});
