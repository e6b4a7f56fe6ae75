// test/kbs/main.ts runs standalone under node_modules/.bin/bun (demo, VM boot test): HTTPS with a
// generated CA, resources from @file and hex, ready file, clean SIGTERM.
import { spawn } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { describe, expect, it } from "vitest";
import { parseResourceArg } from "../../kbs/main.ts";
import { decryptJwe, rawRequest, sampleHandshake } from "../../kbs/raw-client.ts";
import { REPO_ROOT } from "../../helpers/binary.ts";

const BUN = path.join(REPO_ROOT, "node_modules", ".bin", "bun");

describe("test KBS CLI", () => {
  it("parses --resource values and refuses bad ones without echoing the value", () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "kbs-arg-"));
    fs.writeFileSync(path.join(dir, "k"), Buffer.from([1, 2, 3]));
    expect(parseResourceArg("default/key/root=@k", dir)).toEqual(["default/key/root", new Uint8Array([1, 2, 3])]);
    expect(parseResourceArg("a/b/c=00ff")).toEqual(["a/b/c", new Uint8Array([0, 255])]);
    expect(() => parseResourceArg("a/b=00")).toThrow(/not a trustee resource path/);
    expect(() => parseResourceArg("a/b/c=zzzsecret")).toThrow(/@FILE or an even-length hex/);
    expect(() => parseResourceArg("a/b/c=zzzsecret")).not.toThrow(/zzzsecret/);
    fs.rmSync(dir, { recursive: true });
  });

  it("serves HTTPS under bun, writes ca.pem and the ready file, stops on SIGTERM", async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "kbs-cli-"));
    fs.writeFileSync(path.join(dir, "key.bin"), Buffer.from("file-secret"));
    const ready = path.join(dir, "ready");
    const child = spawn(
      BUN,
      [
        path.join(REPO_ROOT, "test/kbs/main.ts"),
        "--port",
        "0",
        "--tls-dir",
        path.join(dir, "tls"),
        "--resource",
        "default/key/root=@key.bin",
        "--resource",
        "default/key/hex=cafe",
        "--allow-tee",
        "sample",
        "--ready-file",
        ready,
      ],
      {
        cwd: dir,
        stdio: ["ignore", "pipe", "pipe"],
      },
    );
    let stderr = "";
    child.stderr.on("data", (c) => (stderr += c));
    try {
      for (let i = 0; i < 100 && !fs.existsSync(ready); i++) await new Promise((r) => setTimeout(r, 100));
      const url = fs.readFileSync(ready, "utf8").trim();
      expect(url).toMatch(/^https:\/\/127\.0\.0\.1:\d+$/);
      const ca = fs.readFileSync(path.join(dir, "tls", "ca.pem"), "utf8");
      const hs = await sampleHandshake(url, { ca });
      const r = await rawRequest(`${url}/kbs/v0/resource/default/key/root`, { headers: { cookie: hs.cookie }, ca });
      expect(Buffer.from(await decryptJwe(r.body, hs.key)).toString()).toBe("file-secret");
      const h = await rawRequest(`${url}/kbs/v0/resource/default/key/hex`, { headers: { cookie: hs.cookie }, ca });
      expect(Buffer.from(await decryptJwe(h.body, hs.key)).toString("hex")).toBe("cafe");
      expect(stderr).not.toContain("file-secret");
      const exited = new Promise<number | null>((res) => child.on("exit", (code) => res(code)));
      child.kill("SIGTERM");
      expect(await exited).toBe(0);
    } finally {
      child.kill("SIGKILL");
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
