// The key that already opens the volume, which authorises adding ours: from --unlock-key-file
// (a file, or "-" for stdin; the bytes as they are, like cryptsetup --key-file), or typed on the
// terminal without echo (no trailing newline, like cryptsetup's prompt). Never from argv or env.
import * as fs from "node:fs";
import { CvmError, errorMessage } from "../../platform/util/errors.ts";

/** cryptsetup's own default limit for a key file is 8 MiB; passphrases and our keys are far smaller. */
export const MAX_EXISTING_KEY_BYTES = 64 * 1024;

function readFdBounded(fd: number, what: string): Buffer {
  const buf = Buffer.alloc(MAX_EXISTING_KEY_BYTES + 1);
  let len = 0;
  try {
    for (;;) {
      const n = fs.readSync(fd, buf, len, buf.length - len, null);
      if (n === 0) break;
      len += n;
      if (len > MAX_EXISTING_KEY_BYTES)
        throw new CvmError("usage", `${what} is longer than ${MAX_EXISTING_KEY_BYTES} bytes`);
    }
  } catch (e) {
    buf.fill(0);
    if (e instanceof CvmError) throw e;
    throw new CvmError("usage", `cannot read ${what}: ${errorMessage(e)}`);
  }
  const key = Buffer.alloc(len);
  buf.copy(key, 0, 0, len);
  buf.fill(0);
  if (len === 0) throw new CvmError("usage", `${what} is empty`);
  return key;
}

export async function readExistingKey(file: string | undefined, device: string): Promise<Buffer> {
  if (file === "-") return readFdBounded(0, "the existing key on stdin");
  if (file !== undefined) {
    let fd: number;
    try {
      fd = fs.openSync(file, "r");
    } catch (e) {
      throw new CvmError("usage", `--unlock-key-file ${file}: ${errorMessage(e)}`);
    }
    try {
      return readFdBounded(fd, `--unlock-key-file ${file}`);
    } finally {
      fs.closeSync(fd);
    }
  }
  if (!process.stdin.isTTY)
    throw new CvmError("usage", "bind needs the volume's existing passphrase or key", {
      hint: "give --unlock-key-file FILE (or - for stdin), or run it on a terminal to be asked",
    });
  return promptHidden(`Existing passphrase for ${device}: `);
}

/** Read one line from the terminal with echo off (raw mode), into a Buffer we can zero. */
function promptHidden(prompt: string): Promise<Buffer> {
  const stdin = process.stdin;
  // Echo off before the prompt appears: whatever is typed after it must never be echoed.
  stdin.setRawMode(true);
  process.stderr.write(prompt);
  const buf = Buffer.alloc(MAX_EXISTING_KEY_BYTES);
  let len = 0;
  return new Promise((resolve, reject) => {
    const finish = (err?: CvmError) => {
      stdin.off("data", onData);
      stdin.setRawMode(false);
      stdin.pause();
      process.stderr.write("\n");
      if (err) {
        buf.fill(0);
        return reject(err);
      }
      const key = Buffer.alloc(len);
      buf.copy(key, 0, 0, len);
      buf.fill(0);
      if (len === 0) return reject(new CvmError("usage", "no passphrase typed"));
      resolve(key);
    };
    const onData = (chunk: Buffer) => {
      for (const byte of chunk) {
        if (byte === 0x0d || byte === 0x0a) return finish();
        if (byte === 0x03 || byte === 0x04) return finish(new CvmError("usage", "passphrase entry cancelled"));
        if (byte === 0x7f || byte === 0x08) len = Math.max(0, len - 1);
        else if (len < buf.length) buf[len++] = byte;
      }
      chunk.fill(0);
    };
    stdin.resume();
    stdin.on("data", onData);
  });
}
