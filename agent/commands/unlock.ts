// `cvm-unlock unlock`: attest, fetch each configured volume's key and open it with cryptsetup
// (mode A of docs/UNLOCK.md), measuring what was opened. --test-only checks the key with
// `cryptsetup open --test-passphrase` instead (no device-mapper needed).
import { CvmError } from "../../platform/util/errors.ts";
import { optBool, optString } from "../cli/args.ts";
import type { Command } from "../cli/command.ts";
import { configLoader, configOptions, platformRoot } from "../cli/common.ts";
import { Timeline } from "../timeline.ts";
import { unlockVolumes } from "../unlock/unlock.ts";
import { reportTimeline, timingOptions } from "../cli/timings.ts";

export const unlockCommand: Command = {
  name: "unlock",
  usage: "unlock [options]",
  description:
    "Volumes come from unlock.volumes (by uuid, partlabel or gpt_auto_root), or --device/--name for one volume.\n" +
    "The key goes to cryptsetup's stdin only. Exit codes: 14 wrong key, 15 volume identity/device problem, 8 KBS refused.",
  options: [
    ...configOptions,
    {
      name: "device",
      kind: "string",
      value: "PATH",
      help: "the LUKS2 device or image (overrides the configured selector)",
    },
    {
      name: "name",
      kind: "string",
      value: "NAME",
      help: "device-mapper name to open as (default: the volume's name, root)",
    },
    {
      name: "test-only",
      kind: "bool",
      help: "only check that the key opens the volume (cryptsetup --test-passphrase); no dm, no measurement",
    },
    { name: "measure", kind: "bool", help: "with --test-only: still extend the PCR/RTMR and write the event record" },
    {
      name: "udev-trigger-marker",
      kind: "string",
      value: "FILE",
      help: "the boot unit starts before udev's coldplug: detection that needs it waits until FILE exists",
    },
    {
      name: "renice-when-ready",
      kind: "bool",
      help: "started at a low priority (the boot unit's Nice=19): return to nice 0 once the volumes are checked",
    },
    ...timingOptions,
  ],
  // --test-only is a check, not the boot: no failure marker unless --measure asks for the boot's measurements
  marksFailure: (args) => !optBool(args, "test-only") || optBool(args, "measure"),
  async run(args, io) {
    if (args.positionals.length) throw new CvmError("usage", "unlock takes no positional arguments (use --device)");
    const timeline = new Timeline();
    const { verity, volumes: outcomes } = await unlockVolumes(
      {
        root: platformRoot(args),
        loadConfig: configLoader(args),
        log: io.log,
        testOnly: optBool(args, "test-only"),
        measure: optBool(args, "measure"),
        device: optString(args, "device"),
        name: optString(args, "name"),
        udevTriggerMarker: optString(args, "udev-trigger-marker"),
        reniceWhenReady: optBool(args, "renice-when-ready"),
      },
      timeline,
    );
    for (const v of verity)
      io.stdout.write(`${v.name}: verity ${v.status} (data ${v.data}, hash ${v.hash}, root hash ${v.roothash})\n`);
    for (const o of outcomes)
      io.stdout.write(
        `${o.name}: ${o.status} (${o.device}, LUKS UUID ${o.uuid}${o.endpoint ? `, key from ${o.endpoint}` : ""})\n`,
      );
    reportTimeline(args, timeline);
    return 0;
  },
};
