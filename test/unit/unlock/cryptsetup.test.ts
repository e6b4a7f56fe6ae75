import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { describe, expect, it } from "vitest";
import { cryptsetupError, runCryptsetup } from "../../../agent/unlock/cryptsetup.ts";
import { volumesToUnlock } from "../../../agent/unlock/unlock.ts";
import { mergeLayers } from "../../../agent/config/load.ts";
import { Deadline } from "../../../platform/util/deadline.ts";
import { EXIT_CODES } from "../../../platform/util/errors.ts";

/** A stand-in cryptsetup that reports what it received: stdin bytes, argv and environment. */
function fakeCryptsetup(body: string): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "fakecs-"));
  const p = path.join(dir, "cryptsetup");
  fs.writeFileSync(p, `#!/bin/sh\n${body}\n`, { mode: 0o755 });
  return p;
}

describe("running cryptsetup", () => {
  it("passes the key on stdin only, with a fixed minimal environment", async () => {
    const bin = fakeCryptsetup('od -An -tx1 | tr -d " \\n"; echo; echo "ARGS:$*"; env | sort');
    const key = new Uint8Array(Buffer.from("00ff10207f80", "hex"));
    const r = await runCryptsetup(
      bin,
      ["open", "--key-file=-", "/dev/x", "root"],
      key,
      new Deadline(10_000),
      "testing",
    );
    expect(r.code).toBe(0);
    const [stdinHex, args, ...env] = r.stdout.trim().split("\n");
    expect(stdinHex).toBe("00ff10207f80");
    expect(args).toBe("ARGS:open --key-file=- /dev/x root");
    expect(env.filter((l) => !/^(PWD|SHLVL|_)=/.test(l))).toEqual(["LC_ALL=C", "PATH=/usr/sbin:/sbin:/usr/bin:/bin"]);
  });

  it("a child that exits without reading stdin is not an error of ours", async () => {
    const r = await runCryptsetup(
      fakeCryptsetup("exit 2"),
      [],
      new Uint8Array(1 << 20),
      new Deadline(10_000),
      "testing",
    );
    expect(r.code).toBe(2);
  });

  it("is killed at the deadline", async () => {
    const t0 = Date.now();
    await expect(
      runCryptsetup(fakeCryptsetup("sleep 30"), [], undefined, new Deadline(300), "testing"),
    ).rejects.toThrow(/deadline/);
    expect(Date.now() - t0).toBeLessThan(5_000);
  });

  it("maps cryptsetup exit codes to typed errors", () => {
    const e = (code: number) =>
      cryptsetupError({ code, stdout: "", stderr: "No key available with this passphrase." }, "/dev/x", "opening");
    expect(e(2).exitCode).toBe(EXIT_CODES["wrong-key"]);
    expect(e(2).message).toMatch(/does not open \/dev\/x .*No key available/);
    expect(e(4).exitCode).toBe(EXIT_CODES.volume);
    expect(e(5).message).toMatch(/busy or the dm name already exists/);
    expect(e(1).exitCode).toBe(EXIT_CODES.unlock);
  });
});

describe("volumesToUnlock", () => {
  const cfg = (unlock: object) => mergeLayers([{ source: "file:t", data: { unlock } as never }]).config;
  it("needs a volume, and --device/--name select exactly one", () => {
    expect(() => volumesToUnlock(cfg({}))).toThrow(/no volume to unlock/);
    expect(volumesToUnlock(cfg({}), "/img", undefined)).toMatchObject([{ name: "root", device: "/img" }]);
    const one = cfg({ volumes: [{ name: "data", uuid: "6d1e7c52-2b4f-4d3e-9a51-0c3b8f2e7a10", partlabel: "data" }] });
    expect(volumesToUnlock(one, "/img", "x")).toMatchObject([
      { name: "x", device: "/img", uuid: "6d1e7c52-2b4f-4d3e-9a51-0c3b8f2e7a10", partlabel: undefined },
    ]);
    const two = cfg({
      volumes: [
        { name: "a", device: "/a" },
        { name: "b", device: "/b" },
      ],
    });
    expect(volumesToUnlock(two).map((v) => v.name)).toEqual(["a", "b"]);
    expect(() => volumesToUnlock(two, "/img")).toThrow(/single volume/);
    expect(() => volumesToUnlock(one, undefined, "bad/name")).toThrow(/not a valid device-mapper name/);
  });
});
