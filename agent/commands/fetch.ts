// `cvm-unlock fetch REPO/TYPE/TAG`: the full KBS exchange; the secret goes to stdout (only when
// stdout is not a terminal) or to --out-fd N. Nothing else is ever written to those.
import * as fs from "node:fs";
import { isatty } from "node:tty";
import { CvmError } from "../../platform/util/errors.ts";
import { attestAndFetch } from "../attest.ts";
import { optInt } from "../cli/args.ts";
import type { Command } from "../cli/command.ts";
import { configOptions, runContext } from "../cli/common.ts";
import { reportTimeline, timingOptions } from "../cli/timings.ts";
import { Timeline } from "../timeline.ts";
import { RESOURCE_PATH } from "../config/patterns.ts";

/** Write all of `data` to fd with blocking writes (handles short writes to pipes). */
function writeAll(fd: number, data: Uint8Array): void {
  let off = 0;
  while (off < data.length) off += fs.writeSync(fd, data, off, data.length - off);
}

export const fetchCommand: Command = {
  name: "fetch",
  usage: "fetch [options] [REPO/TYPE/TAG]",
  description:
    "The secret is written to stdout, or to the file descriptor given by --out-fd; never to a terminal or stderr.\n" +
    "The resource path comes from the argument, --resource, or the config's `resource`.",
  options: [
    ...configOptions,
    { name: "out-fd", kind: "string", value: "N", help: "write the secret to file descriptor N instead of stdout" },
    ...timingOptions,
  ],
  async run(args, io) {
    const timeline = new Timeline();
    const outFd = optInt(args, "out-fd", 0, 1_000_000);
    if (args.positionals.length > 1) throw new CvmError("usage", "fetch takes at most one resource path");
    // Decide where the secret goes before doing any work: never print a key on a terminal.
    const fd = outFd ?? 1;
    try {
      fs.fstatSync(fd);
    } catch {
      throw new CvmError("usage", `--out-fd ${fd} is not an open file descriptor`);
    }
    if (fd === 2)
      throw new CvmError(
        "usage",
        "refusing to write a secret to file descriptor 2: that is stderr, where the logs go",
        { hint: "use stdout (a pipe or file) or another --out-fd" },
      );
    if (isatty(fd))
      throw new CvmError(
        "usage",
        `refusing to write a secret to a terminal (${outFd === undefined ? "stdout" : `--out-fd ${fd}`})`,
        { hint: "redirect it to a pipe or file, or use --out-fd N" },
      );

    const ctx = runContext(args, io.log);
    try {
      const resource = args.positionals[0] ?? ctx.config.resource;
      if (resource === undefined)
        throw new CvmError("usage", "no resource given", {
          hint: "pass REPO/TYPE/TAG, --resource, or set `resource` in the config",
        });
      if (!RESOURCE_PATH.test(resource))
        throw new CvmError("usage", `resource path ${JSON.stringify(resource)} is not REPO/TYPE/TAG`);
      const { secret, endpoint } = await attestAndFetch(ctx, resource, timeline);
      try {
        writeAll(fd, secret);
      } finally {
        secret.fill(0);
      }
      io.log.info(
        `released ${resource} by ${endpoint} (${secret.length} bytes) in ${timeline.totalMs().toFixed(0)} ms`,
      );
      reportTimeline(args, timeline);
      return 0;
    } finally {
      ctx.deadline.dispose();
    }
  },
};
