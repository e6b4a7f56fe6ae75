// `cvm-unlock serve-keys`: mode B of docs/UNLOCK.md. Checks the headers of the crypttab volumes
// whose key file is the key socket, attests once, fetches all their keys and serves each volume
// its key to systemd-cryptsetup on the socket (passed by systemd, or bound here).
import { CvmError } from "../../platform/util/errors.ts";
import { optString } from "../cli/args.ts";
import type { Command } from "../cli/command.ts";
import { configLoader, configOptions, crypttabOptions, platformRoot } from "../cli/common.ts";
import { reportTimeline, timingOptions } from "../cli/timings.ts";
import { Timeline } from "../timeline.ts";
import { DEFAULT_CRYPTTAB, DEFAULT_KEY_SOCKET } from "../unlock/crypttab.ts";
import { loadUnixSockets } from "../unlock/native-socket.ts";
import { serveVolumeKeys } from "../unlock/serve.ts";

export const serveKeysCommand: Command = {
  name: "serve-keys",
  usage: "serve-keys [options]",
  description:
    "Mode B: systemd-cryptsetup opens the crypttab volumes whose key file is the key socket; this serves each its own key, once.\n" +
    "Uses the socket systemd passes (cvm-unlock-key.socket), else binds --socket itself. Exit 0 when every volume was served.",
  options: [...configOptions, ...crypttabOptions, ...timingOptions],
  marksFailure: () => true,
  async run(args, io) {
    if (args.positionals.length) throw new CvmError("usage", "serve-keys takes no positional arguments");
    const timeline = new Timeline();
    const served = await serveVolumeKeys(
      {
        root: platformRoot(args),
        loadConfig: configLoader(args),
        log: io.log,
        crypttab: optString(args, "crypttab") ?? DEFAULT_CRYPTTAB,
        socket: optString(args, "socket") ?? DEFAULT_KEY_SOCKET,
        sockets: await loadUnixSockets(),
        env: process.env,
        pid: process.pid,
      },
      timeline,
    );
    io.stdout.write(`served: ${served.join(", ")}\n`);
    reportTimeline(args, timeline);
    return 0;
  },
};
