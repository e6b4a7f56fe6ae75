// The LUKS2 side of `bind`, all through cryptsetup with keys on pipes only: the existing key on
// stdin (--key-file=-), the new key on a pipe at the child's fd 3 (/dev/fd/3 as the new key
// file). Keyslot PBKDF: PBKDF2-SHA256 with 1000 iterations (cryptsetup's minimum). The new key is
// 64 random bytes, so stretching adds nothing an attacker would notice, and a cheap keyslot keeps
// unlock fast and small in a VM's initramfs (argon2id's default wants up to 1 GiB of memory).
import * as fs from "node:fs";
import type { Deadline } from "../../platform/util/deadline.ts";
import { CvmError } from "../../platform/util/errors.ts";
import { readLuks2Header } from "../../platform/luks/volume-io.ts";
import { buildCvmToken, findCvmToken, type CvmToken } from "../config/layers/token.ts";
import { cryptsetupError, runCryptsetup } from "../unlock/cryptsetup.ts";
import type { OsPipe } from "./os-pipe.ts";

export const KEYSLOT_PBKDF = ["--pbkdf", "pbkdf2", "--pbkdf-force-iterations", "1000", "--hash", "sha256"];
/** LUKS2 has 32 keyslots (0..31). */
export const MAX_KEYSLOTS = 32;
/** A pipe buffer holds at least 4 KiB (POSIX PIPE_BUF); we write before the child starts. */
const MAX_PIPED_KEY_BYTES = 4096;

export interface Volume {
  bin: string;
  device: string;
  deadline: Deadline;
}

export function keyslotIds(device: string): string[] {
  return Object.keys(readLuks2Header(device).json.keyslots).sort((a, b) => Number(a) - Number(b));
}

/** Does `key` open a keyslot (`slot`, or any)? cryptsetup exit 2 = no; other failures throw. */
export async function keyOpens(v: Volume, key: Uint8Array, slot?: string): Promise<boolean> {
  const args = [
    "open",
    "--test-passphrase",
    "--key-file=-",
    ...(slot !== undefined ? ["--key-slot", slot] : []),
    v.device,
  ];
  const r = await runCryptsetup(v.bin, args, key, v.deadline, "testing a key on");
  if (r.code === 0) return true;
  if (r.code === 2) return false;
  throw cryptsetupError(r, v.device, "testing a key on");
}

/** Add a keyslot for `newKey`, authorised by `existingKey`; returns the new keyslot id. */
export async function addKeyslot(
  v: Volume,
  existingKey: Uint8Array,
  newKey: Uint8Array,
  pipe: OsPipe,
): Promise<string> {
  if (newKey.length > MAX_PIPED_KEY_BYTES) throw new CvmError("internal", "the new key is too long for a pipe");
  const before = keyslotIds(v.device);
  const { readFd, writeFd } = pipe();
  let run: Promise<{ code: number; stdout: string; stderr: string }>;
  try {
    // The whole key fits in the pipe buffer, so it is written (and the write end closed, giving
    // cryptsetup its EOF) before the child starts; nothing else ever holds the write end.
    try {
      let off = 0;
      while (off < newKey.length) off += fs.writeSync(writeFd, newKey, off, newKey.length - off);
    } finally {
      fs.closeSync(writeFd);
    }
    run = runCryptsetup(
      v.bin,
      ["luksAddKey", "--batch-mode", ...KEYSLOT_PBKDF, "--key-file=-", v.device, "/dev/fd/3"],
      existingKey,
      v.deadline,
      "adding a keyslot to",
      [readFd],
    );
  } finally {
    fs.closeSync(readFd); // the child (if started) has its own copy at fd 3
  }
  const r = await run;
  if (r.code !== 0) throw cryptsetupError(r, v.device, "adding a keyslot to");
  const added = keyslotIds(v.device).filter((id) => !before.includes(id));
  if (added.length !== 1)
    throw new CvmError(
      "unlock",
      `cryptsetup luksAddKey succeeded but ${added.length} new keyslots appeared on ${v.device}`,
    );
  return added[0]!;
}

/** Wipe `slot`; cryptsetup checks that `remainingKey` opens another keyslot first. */
export async function killKeyslot(v: Volume, slot: string, remainingKey: Uint8Array): Promise<void> {
  const r = await runCryptsetup(
    v.bin,
    ["luksKillSlot", "--batch-mode", "--key-file=-", v.device, slot],
    remainingKey,
    v.deadline,
    `wiping keyslot ${slot} of`,
  );
  if (r.code !== 0) throw cryptsetupError(r, v.device, `wiping keyslot ${slot} of`);
}

/** Write (or replace) the cvm-unlock token, then read it back and compare. Returns its id. */
export async function writeCvmToken(v: Volume, token: CvmToken): Promise<{ id: string; replaced: boolean }> {
  const existing = findCvmToken(readLuks2Header(v.device));
  const args = [
    "token",
    "import",
    "--json-file",
    "-",
    ...(existing ? ["--token-id", existing.id, "--token-replace"] : []),
    v.device,
  ];
  const json = new TextEncoder().encode(JSON.stringify(buildCvmToken(token)));
  const r = await runCryptsetup(v.bin, args, json, v.deadline, "importing the token into");
  if (r.code !== 0) throw cryptsetupError(r, v.device, "importing the token into");
  const back = findCvmToken(readLuks2Header(v.device));
  if (!back || JSON.stringify(buildCvmToken(back.token)) !== JSON.stringify(buildCvmToken(token)))
    throw new CvmError("unlock", `the token read back from ${v.device} differs from the one written`);
  return { id: back.id, replaced: existing !== undefined };
}
