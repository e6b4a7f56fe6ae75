// The kernel command line parameters that open a shell to the host: each one refused, each
// harmless form (the defaults, an explicit "off") accepted, and the refusal happens from the file.
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { describe, expect, it } from "vitest";
import { refuseShellCmdline, shellDoor, shellDoors } from "../../../agent/cmdline-guard.ts";
import { CvmError, EXIT_CODES } from "../../../platform/util/errors.ts";

describe("shell doors on the kernel command line", () => {
  it.each([
    // found by playing the host after the first version (review): PID 1 options after "--",
    // console prompts, and mounts into the unlocked root
    "--unit=emergency.target",
    "--crash-shell",
    "--confirm-spawn",
    "rd.cmdline=ask",
    "systemd.confirm_spawn=1",
    "systemd.confirm-spawn",
    "systemd.crash_shell=yes",
    "systemd.crash-shell",
    "mount.usr=/dev/vdb",
    "mount.usrfstype=ext4",
    "mount.usrflags=rw",
    "systemd.mount-extra=/dev/vdb:/usr:ext4",
    "rd.systemd.mount-extra=/dev/vdb:/sysroot/usr:ext4",
    "systemd.swap-extra=/dev/vdc",
    "rd.break",
    "rd.break=pre-mount",
    "rd.break=cmdline",
    "rdbreak",
    "init=/bin/sh",
    "init=/usr/bin/bash",
    "init=",
    "init",
    "rd.shell",
    "rd.shell=1",
    "rd.shell=yes",
    "rdshell",
    "rd.emergency=reboot",
    "rd.emergency=halt",
    "rd.emergency=",
    "systemd.debug_shell",
    "systemd.debug-shell",
    "systemd.debug_shell=1",
    "systemd.debug_shell=/dev/tty1",
    "rd.systemd.debug_shell",
    "rd.systemd.debug-shell=yes",
    "systemd.unit=emergency.target",
    "systemd.unit=rescue.target",
    "systemd.unit=debug-shell.service",
    "rd.systemd.unit=emergency.target",
    "rd.systemd.unit=rescue.target",
    "rd.systemd.unit=initrd-switch-root.target",
    "systemd.wants=debug-shell.service",
    "rd.systemd.wants=emergency.service",
    "rd.systemd.mask=cvm-unlock-verify-root.service",
    "systemd.run=/bin/sh",
    "rd.systemd.run=/bin/sh",
    "systemd.setenv=SYSTEMD_SULOGIN_FORCE=1",
    "single",
    "emergency",
    "rescue",
    "S",
    "1",
    "-b",
  ])("refuses %s", (tok) => {
    const d = shellDoor(tok, false);
    expect(d, tok).toBeDefined();
    expect(d!.param).toBe(tok);
    expect(d!.why.length).toBeGreaterThan(10);
  });

  it.each([
    "rd.cmdline=0",
    "systemd.confirm_spawn=0",
    "systemd.crash_shell=no",
    "rd.shell=0",
    "rd.shell=no",
    "rd.shell=false",
    "rd.emergency=poweroff",
    "systemd.debug_shell=0",
    "rd.systemd.debug_shell=off",
    "systemd.unit=multi-user.target",
    "systemd.unit=default.target",
    "rd.systemd.unit=initrd.target",
    "systemd.setenv=LANG=C",
    "rd.luks=0",
    "root=/dev/mapper/root",
    "console=ttyS0",
    "rd.breakfast=1",
    "init=/sbin/init",
    "init=/usr/lib/systemd/systemd",
    "3",
    "quiet",
  ])("accepts %s", (tok) => {
    expect(shellDoor(tok, true)).toBeUndefined();
  });

  it("rdinit= is a door only inside the initramfs, and not when it names the initramfs' own /init", () => {
    expect(shellDoor("rdinit=/bin/sh", true)).toBeDefined();
    expect(shellDoor("rdinit=/init", true)).toBeUndefined();
    // a microVM host's rdinit= on a workstation or CI runner (not an initrd) is not ours to judge
    expect(shellDoor("rdinit=/process_api", false)).toBeUndefined();
  });

  it("finds every door on a whole command line, quoted values included", () => {
    const doors = shellDoors('console=ttyS0 rd.break "init=/bin/sh -i" quiet rd.shell=0 -- single\n', false);
    expect(doors.map((d) => d.param)).toEqual(["rd.break", "init=/bin/sh -i", "single"]);
    expect(shellDoors("console=ttyS0 rd.luks=0 root=/dev/mapper/root rd.shell=0 rd.emergency=poweroff", true)).toEqual(
      [],
    );
  });

  describe("refuseShellCmdline reads <root>/proc/cmdline", () => {
    const tree = (cmdline: string | Buffer | undefined, initrd = false) => {
      const root = fs.mkdtempSync(path.join(os.tmpdir(), "cmdline-guard-"));
      fs.mkdirSync(path.join(root, "proc"));
      fs.mkdirSync(path.join(root, "etc"));
      if (cmdline !== undefined) fs.writeFileSync(path.join(root, "proc/cmdline"), cmdline);
      if (initrd) fs.writeFileSync(path.join(root, "etc/initrd-release"), "NAME=dracut\n");
      return root;
    };
    const refusal = (root: string) => {
      try {
        refuseShellCmdline(root);
      } catch (e) {
        return e as CvmError;
      }
      return undefined;
    };

    it("exit 16 naming the parameter", () => {
      const e = refusal(tree("console=ttyS0 rd.break=pre-mount\n"));
      expect(e).toBeInstanceOf(CvmError);
      expect(e!.kind).toBe("unsafe-cmdline");
      expect(e!.exitCode).toBe(16);
      expect(EXIT_CODES["unsafe-cmdline"]).toBe(16);
      expect(e!.message).toMatch(/rd\.break=pre-mount \(dracut stops in a shell/);
      expect(e!.message).toMatch(/refusing to contact the KBS/);
    });

    it("a clean command line and a missing one pass", () => {
      expect(refusal(tree("console=ttyS0 rd.luks=0\n", true))).toBeUndefined();
      expect(refusal(tree(undefined))).toBeUndefined();
    });

    it("rdinit= counts when <root>/etc/initrd-release says this is the initramfs", () => {
      expect(refusal(tree("rdinit=/bin/sh\n", false))).toBeUndefined();
      expect(refusal(tree("rdinit=/bin/sh\n", true))?.kind).toBe("unsafe-cmdline");
    });

    it("an oversized, unterminated or binary command line is refused rather than skipped", () => {
      for (const bad of ["a".repeat(10_000), 'init="/bin/sh', "quiet\u0001rd.break"]) {
        const e = refusal(tree(bad));
        expect(e?.kind, JSON.stringify(bad.slice(0, 20))).toBe("unsafe-cmdline");
        expect(e!.message).toMatch(/cannot check the kernel command line/);
      }
    });
  });
});
