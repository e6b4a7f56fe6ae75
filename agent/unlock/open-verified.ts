// Open a volume with exactly the header bytes the agent verified, then check what the kernel got.
//
// cryptsetup re-reads the device after our checks, so a host block backend could answer
// differently the second time (time-of-check/time-of-use). We therefore hand cryptsetup a private
// copy (`--header FILE`, tmpfs under the state directory, 0600, removed afterwards) of both binary
// headers, the JSON areas and every keyslot area as read and verified. The copy keeps the on-disk
// layout byte for byte, so the segment offset in it still points past the metadata on the data
// device (a detached header with offset 0 would mean "data from sector 0"; the allow-list refuses
// an offset inside the metadata anyway). After a real open the live dm-crypt table must equal the
// verified layout (live-table.ts), otherwise the mapping is closed again.
import * as crypto from "node:crypto";
import * as fs from "node:fs";
import * as path from "node:path";
import type { Deadline } from "../../platform/util/deadline.ts";
import { CvmError, errorMessage } from "../../platform/util/errors.ts";
import type { Logger } from "../../platform/util/log.ts";
import type { Luks2Volume, MetadataImage } from "../../platform/luks/volume-io.ts";
import { runCryptsetup, type CryptsetupResult } from "./cryptsetup.ts";
import type { VerifiedLayout } from "./header-policy.ts";
import { expectedMapping } from "./live-table.ts";
import { checkLiveMapping } from "./live-mapping.ts";

export interface VerifiedOpen {
  cryptsetup: string;
  /** unlock.dmsetup (name or path). */
  dmsetup: string;
  device: string;
  name: string;
  testOnly: boolean;
  volume: Luks2Volume;
  verified: VerifiedLayout;
  /** Where the private header copy goes (the agent's tmpfs state directory). */
  stateDir: string;
  /** Platform root (sysfs). */
  root: string;
  deadline: Deadline;
  log: Logger;
}

/**
 * Write the verified metadata to a fresh 0600 file nobody else can have opened, at the device's
 * offsets (the unused rest of the keyslots area is a hole of zeros); returns its path.
 */
export function writeHeaderCopy(stateDir: string, metadata: MetadataImage): string {
  const file = path.join(stateDir, `header-${crypto.randomBytes(8).toString("hex")}.luks2`);
  let fd: number;
  try {
    fs.mkdirSync(stateDir, { recursive: true, mode: 0o755 });
    // "wx": O_CREAT|O_EXCL, so a pre-planted file or symlink at that name is an error, not a target.
    fd = fs.openSync(file, "wx", 0o600);
  } catch (e) {
    throw new CvmError("unlock", `cannot create the private header copy in ${stateDir}: ${errorMessage(e)}`, {
      hint: "the state directory (next to unlock.measure.record_path) must be a writable tmpfs such as /run/cvm-unlock",
    });
  }
  try {
    fs.ftruncateSync(fd, metadata.size);
    for (const { offset, bytes } of metadata.extents) {
      let off = 0;
      while (off < bytes.length) off += fs.writeSync(fd, bytes, off, bytes.length - off, offset + off);
    }
  } catch (e) {
    // A full /run (ENOSPC) is the platform's problem, not ours: fail closed, leave no partial copy.
    fs.closeSync(fd);
    fs.rmSync(file, { force: true });
    throw new CvmError("platform", `cannot write the private header copy in ${file}: ${errorMessage(e)}`, {
      hint: "the state directory must be a tmpfs with room for the LUKS2 metadata (a few hundred KiB)",
    });
  }
  fs.closeSync(fd);
  return file;
}

function removeCopy(file: string, log: Logger): void {
  try {
    fs.rmSync(file, { force: true });
  } catch (e) {
    log.warning(`cannot remove the private header copy ${file}: ${errorMessage(e)}`);
  }
}

/** cryptsetup open (or --test-passphrase) with the private header copy; `input` is the key or "inherit" (console). */
export async function openVerified(
  o: VerifiedOpen,
  input: Uint8Array | "inherit",
  doing: string,
): Promise<CryptsetupResult> {
  const copy = writeHeaderCopy(o.stateDir, o.volume.metadata);
  try {
    const key = input === "inherit" ? [] : ["--key-file=-"];
    const args = o.testOnly
      ? ["open", "--test-passphrase", "--type", "luks2", "--header", copy, ...key, o.device]
      : ["open", "--type", "luks2", "--header", copy, ...key, o.device, o.name];
    const r = await runCryptsetup(o.cryptsetup, args, input, o.deadline, doing);
    if (r.code === 0 && !o.testOnly)
      await checkLiveMapping({
        cryptsetup: o.cryptsetup,
        dmsetup: o.dmsetup,
        name: o.name,
        device: o.device,
        expected: expectedMapping(o.verified, o.volume),
        root: o.root,
        deadline: o.deadline,
      });
    return r;
  } finally {
    removeCopy(copy, o.log);
  }
}
