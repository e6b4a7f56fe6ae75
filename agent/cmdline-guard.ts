// Kernel command line parameters that hand the host a shell (or its own program) in this boot.
// On a boot whose command line is not measured the host writes it: `rd.break` stops in a dracut
// shell inside the attested initramfs, `init=/bin/sh` runs a shell in the unlocked root, and so on.
// From such a shell `cvm-unlock fetch` would still get the key while the measurements look fresh,
// so the agent refuses to contact the KBS at all (exit 16, docs/CLI.md). This is a second line:
// the defence is a KBS policy over the measured command line (docs/SECURITY.md).
import * as fs from "node:fs";
import * as path from "node:path";
import { CvmError, errorMessage } from "../platform/util/errors.ts";
import { fileText, readFileIfPresent } from "../platform/util/files.ts";
import { splitCmdline } from "./config/layers/cmdline.ts";

export interface ShellDoor {
  /** The parameter as it appears on the command line. */
  param: string;
  why: string;
}

// systemd and the kernel treat '-' and '_' in parameter names alike (systemd.debug-shell).
const norm = (key: string) => key.replace(/-/g, "_");
const OFF = ["0", "no", "false", "off"];
/** The targets a normal boot runs; any other unit is the host's choice (emergency, rescue, debug-shell, ...). */
const DEFAULT_UNITS: Record<string, string[]> = {
  "systemd.unit": ["default.target", "multi-user.target", "graphical.target"],
  "rd.systemd.unit": ["initrd.target"],
};
/** init= naming the unlocked root's own init: the root is the verified volume, so that program is the owner's. */
const ROOT_INITS = ["/sbin/init", "/usr/sbin/init", "/lib/systemd/systemd", "/usr/lib/systemd/systemd"];
/** SysV runlevel words systemd still maps to rescue.target / emergency.target. */
const RUNLEVEL_SHELLS = ["single", "s", "S", "1", "-s", "rescue", "emergency", "-b"];

/** Is `tok` (one command line word) a shell door? `inInitrd`: rdinit= only matters inside the initramfs. */
export function shellDoor(tok: string, inInitrd: boolean): ShellDoor | undefined {
  const eq = tok.indexOf("=");
  const key = norm(eq === -1 ? tok : tok.slice(0, eq));
  const value = eq === -1 ? undefined : tok.slice(eq + 1);
  const door = (why: string): ShellDoor => ({ param: tok, why });
  switch (key) {
    case "rd.break":
    case "rdbreak":
      return door("dracut stops in a shell inside the initramfs");
    case "init":
      return ROOT_INITS.includes(value ?? "")
        ? undefined
        : door("a program the host chose runs as PID 1 of the unlocked root");
    case "rdinit":
      return inInitrd && value !== "/init"
        ? door("the kernel runs the host's program as the initramfs init")
        : undefined;
    case "rd.shell":
    case "rdshell":
      return value === undefined || !OFF.includes(value.toLowerCase())
        ? door("dracut may drop to a shell on any failure")
        : undefined;
    case "rd.emergency":
      return value !== "poweroff" ? door("dracut's emergency handling is not poweroff") : undefined;
    case "systemd.debug_shell":
    case "rd.systemd.debug_shell":
      return value === undefined || !OFF.includes(value.toLowerCase())
        ? door("systemd starts a root shell on tty9")
        : undefined;
    case "systemd.unit":
    case "rd.systemd.unit":
      return DEFAULT_UNITS[key]!.includes(value ?? "") ? undefined : door("systemd boots into a unit the host chose");
    case "systemd.wants":
    case "rd.systemd.wants":
      return door("systemd starts an extra unit the host chose (e.g. debug-shell.service)");
    case "systemd.mask":
    case "rd.systemd.mask":
      return door("systemd masks a unit the host chose (e.g. the root check or the failure policy)");
    case "systemd.run":
    case "rd.systemd.run":
      return door("systemd runs a command the host chose");
    case "systemd.setenv":
    case "rd.systemd.setenv":
      return value?.startsWith("SYSTEMD_SULOGIN_FORCE") ? door("sulogin opens a shell without a password") : undefined;
    case "systemd.confirm_spawn":
    case "rd.systemd.confirm_spawn":
      return value === undefined || !OFF.includes(value.toLowerCase())
        ? door("systemd asks on the console before each unit: the host can skip the root check")
        : undefined;
    case "systemd.crash_shell":
    case "rd.systemd.crash_shell":
      return value === undefined || !OFF.includes(value.toLowerCase())
        ? door("systemd opens a root shell when PID 1 crashes")
        : undefined;
    // Arguments after "--" reach systemd as PID 1 (inside the initrd too).
    case "__unit":
      return door("systemd boots into a unit the host chose");
    case "__crash_shell":
    case "__confirm_spawn":
      return door("systemd's crash shell or console confirmation, chosen by the host");
    case "rd.cmdline":
      return value === "ask" ? door("dracut reads more kernel parameters from the console") : undefined;
    // Mounts the host chooses inside the unlocked root: its /usr would run as the root's init.
    case "mount.usr":
    case "mount.usrfstype":
    case "mount.usrflags":
    case "systemd.mount_extra":
    case "rd.systemd.mount_extra":
    case "systemd.swap_extra":
    case "rd.systemd.swap_extra":
      return door("a file system or swap the host chose is mounted into the unlocked root");
  }
  if (eq === -1 && RUNLEVEL_SHELLS.includes(tok)) return door("systemd boots into rescue or emergency mode");
  return undefined;
}

/** Every shell door on `text` (the whole /proc/cmdline, including words after "--" that init sees). */
export function shellDoors(text: string, inInitrd: boolean): ShellDoor[] {
  return splitCmdline(text)
    .map((t) => shellDoor(t, inInitrd))
    .filter((d): d is ShellDoor => d !== undefined);
}

const MAX_CMDLINE_READ = 8192; // splitCmdline refuses more than 4096 characters

/** /proc/cmdline under `root`, bounded; undefined without /proc (a test tree, a container without procfs). */
export function readKernelCmdline(root: string): string | undefined {
  const bytes = readFileIfPresent(path.join(root, "proc/cmdline"), {
    what: "kernel command line",
    max: MAX_CMDLINE_READ,
  });
  return bytes === undefined ? undefined : fileText(bytes);
}

/** Refuse (exit 16) when /proc/cmdline under `root` opens a shell door; unreadable or malformed also refuses. */
export function refuseShellCmdline(root: string): void {
  const file = path.join(root, "proc/cmdline");
  let doors: ShellDoor[];
  try {
    const text = readKernelCmdline(root);
    if (text === undefined) return; // nothing to check
    doors = shellDoors(text, fs.existsSync(path.join(root, "etc/initrd-release")));
  } catch (e) {
    throw new CvmError("unsafe-cmdline", `cannot check the kernel command line ${file}: ${errorMessage(e)}`);
  }
  if (doors.length === 0) return;
  throw new CvmError(
    "unsafe-cmdline",
    `the kernel command line opens a shell to the host: ${doors.map((d) => `${d.param} (${d.why})`).join("; ")}; refusing to contact the KBS`,
    {
      hint: "remove the parameter(s); the KBS policy should also cover the measured command line (docs/SECURITY.md)",
    },
  );
}
