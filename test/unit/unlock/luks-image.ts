// Test LUKS2 images on plain files (no device-mapper needed): luksFormat with cheap PBKDF2 so a
// keyslot check takes milliseconds. The key goes to cryptsetup on stdin, like the agent does.
import { toolsAvailable } from "../../helpers/tools.ts";
import { execFileSync, spawnSync } from "node:child_process";
import * as crypto from "node:crypto";
import * as fs from "node:fs";
import * as path from "node:path";

export const CRYPTSETUP = ["/usr/sbin/cryptsetup", "/sbin/cryptsetup"].find((p) => fs.existsSync(p));

export function cryptsetupAvailable(): boolean {
  return toolsAvailable("cryptsetup") && CRYPTSETUP !== undefined && spawnSync(CRYPTSETUP, ["--version"]).status === 0;
}

export interface LuksImage {
  file: string;
  key: Buffer;
  uuid: string;
}

export function makeLuksImage(
  dir: string,
  name: string,
  uuid: string = crypto.randomUUID(),
  key: Buffer = crypto.randomBytes(32),
): LuksImage {
  const file = path.join(dir, name);
  fs.writeFileSync(file, "");
  fs.truncateSync(file, 20 * 1024 * 1024);
  execFileSync(
    CRYPTSETUP!,
    [
      "luksFormat",
      "--batch-mode",
      "--type",
      "luks2",
      "--pbkdf",
      "pbkdf2",
      "--pbkdf-force-iterations",
      "1000",
      "--uuid",
      uuid,
      "--key-file=-",
      file,
    ],
    {
      input: key,
      stdio: ["pipe", "ignore", "pipe"],
    },
  );
  return { file, key, uuid };
}

export function tokenExport(file: string, id: number): unknown {
  return JSON.parse(
    execFileSync(CRYPTSETUP!, ["token", "export", "--token-id", String(id), file], { encoding: "utf8" }),
  );
}

/**
 * The attacker's header rewriter: edit the LUKS2 JSON metadata of an image in place, write the
 * same text into both header copies and recompute both SHA-256 checksums, exactly as a host with
 * write access to the disk can. UUID, seqid, keyslot areas and data are left alone.
 */
export function rewriteLuks2Json(file: string, edit: (json: any) => void): void {
  const fd = fs.openSync(file, "r+");
  try {
    const first = Buffer.alloc(4096);
    fs.readSync(fd, first, 0, 4096, 0);
    const hdrSize = Number(first.readBigUInt64BE(8));
    const primary = Buffer.alloc(hdrSize);
    fs.readSync(fd, primary, 0, hdrSize, 0);
    const area = primary.subarray(4096);
    const json = JSON.parse(area.subarray(0, area.indexOf(0)).toString("utf8"));
    edit(json);
    const text = Buffer.from(JSON.stringify(json));
    if (text.length >= area.length) throw new Error("rewritten LUKS2 JSON does not fit the JSON area");
    for (const [offset, magic] of [
      [0, "LUKS"],
      [hdrSize, "SKUL"],
    ] as const) {
      const copy = Buffer.alloc(hdrSize);
      fs.readSync(fd, copy, 0, hdrSize, offset);
      if (copy.subarray(0, 4).toString("latin1") !== magic) throw new Error(`no ${magic} header at ${offset}`);
      copy.fill(0, 4096);
      text.copy(copy, 4096);
      copy.fill(0, 448, 512);
      crypto.createHash("sha256").update(copy).digest().copy(copy, 448);
      fs.writeSync(fd, copy, 0, hdrSize, offset);
    }
  } finally {
    fs.closeSync(fd);
  }
}
