// The boot unit starts the agent at Nice=19 before udev's coldplug (dracut-module, cvm-unlock.service):
// with --renice-when-ready the compiled agent returns to nice 0 once its volumes are checked, so
// the KBS exchange and cryptsetup run at normal priority; without the flag the nice value it was
// started with stays. A cryptsetup wrapper records the nice value it runs at, and that of every
// thread of the agent (its parent): Linux keeps one per thread, and the runtime's threads (the JIT
// compiler, the allocator's) started at 19 too. Real cryptsetup behind it, --test-only.
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { BINARY, ensureBinary, runCli } from "../helpers/binary.ts";
import { startTestKbs, type TestKbs } from "../kbs/server.ts";
import { cryptsetupAvailable, makeLuksImage, type LuksImage } from "../unit/unlock/luks-image.ts";
import { findCryptsetup } from "../../agent/unlock/cryptsetup.ts";

const have = cryptsetupAvailable();
let work: string;
let kbs: TestKbs;
let img: LuksImage;
let cfg: string;
const niceFile = () => path.join(work, "cryptsetup-nice");
const agentThreadsFile = () => path.join(work, "agent-threads-nice");
/** "thread name: nice" for every thread of the agent while cryptsetup ran. */
const agentThreads = () => fs.readFileSync(agentThreadsFile(), "utf8").trim().split("\n");

beforeAll(async () => {
  if (!have) return;
  ensureBinary();
  work = fs.mkdtempSync(path.join(os.tmpdir(), "unlock-priority-"));
  img = makeLuksImage(work, "disk.img");
  kbs = await startTestKbs({ resources: { "default/key/root": img.key } });
  const wrapper = path.join(work, "cryptsetup");
  fs.writeFileSync(
    wrapper,
    [
      "#!/bin/sh",
      `awk '{print $19}' /proc/$$/stat > '${niceFile()}'`,
      // stat field 19 is the nice value; a thread's name (field 2) may contain spaces
      `for t in /proc/$PPID/task/*; do echo "$(cat $t/comm): $(sed 's/.*) //' $t/stat | awk '{print $17}')"; done > '${agentThreadsFile()}'`,
      `exec '${findCryptsetup("cryptsetup")}' "$@"`,
      "",
    ].join("\n"),
    { mode: 0o755 },
  );
  cfg = path.join(work, "config.json");
  fs.writeFileSync(
    cfg,
    JSON.stringify({
      platform: { tee: "sample", allow_sample: true },
      kbs: { insecure_http: true, endpoints: [kbs.url] },
      unlock: {
        cryptsetup: wrapper,
        volumes: [{ name: "root", uuid: img.uuid, device: img.file, resource: "default/key/root" }],
      },
    }),
  );
});
afterAll(async () => {
  await kbs?.close();
  if (work) fs.rmSync(work, { recursive: true, force: true });
});

const unlockAtNice19 = (...extra: string[]) =>
  runCli(
    ["-n", "19", BINARY, "unlock", "--test-only", "--config", cfg, "--verbose", "--log-format", "text", ...extra],
    {
      binary: "nice",
    },
  );

describe.skipIf(!have)("unlock started at Nice=19 (the boot unit)", () => {
  it("--renice-when-ready: back to nice 0 once the volume is checked; cryptsetup runs at nice 0", async () => {
    const r = await unlockAtNice19("--renice-when-ready");
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/volumes ready: priority nice 19 -> 0/);
    expect(fs.readFileSync(niceFile(), "utf8").trim()).toBe("0");
    const threads = agentThreads();
    expect(threads.length, threads.join("\n")).toBeGreaterThan(1); // the runtime's threads are there
    expect(
      threads.filter((t) => !t.endsWith(": 0")),
      threads.join("\n"),
    ).toEqual([]);
  });

  it("without it the agent keeps the priority it was given", async () => {
    const r = await unlockAtNice19();
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).not.toMatch(/priority nice/);
    expect(fs.readFileSync(niceFile(), "utf8").trim()).toBe("19");
    expect(agentThreads().filter((t) => !t.endsWith(": 19"))).toEqual([]);
  });
});
