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
