import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { describe, expect, it } from "vitest";
import { findDevice, findGptPartition, waitForDevice, type VolumeSelector } from "../../../platform/luks/resolve.ts";
import { verifyRoot, parseMountinfo } from "../../../agent/unlock/verify-root.ts";
import { Deadline } from "../../../platform/util/deadline.ts";
import { silentLogger } from "../../../platform/util/log.ts";
import { CvmError } from "../../../platform/util/errors.ts";

const GPT = fs.readFileSync(path.join(import.meta.dirname, "../../fixtures/unlock/gpt-root.bin"));
const vol = (o: Partial<VolumeSelector>): VolumeSelector => ({ name: "root", gpt_auto_root: false, ...o });

/** A stand-in /sys + /dev: disks with partitions, as sysfs lays them out (class links into devices/). */
function fakeRoot(disks: Record<string, { gpt?: Buffer; parts: Record<number, string | undefined> }>): string {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), "blk-"));
  fs.mkdirSync(path.join(root, "sys/class/block"), { recursive: true });
  fs.mkdirSync(path.join(root, "dev"));
  let minor = 0;
  for (const [disk, d] of Object.entries(disks)) {
    const dd = path.join(root, "sys/devices/virtual/block", disk);
    fs.mkdirSync(dd, { recursive: true });
    fs.writeFileSync(path.join(dd, "uevent"), `MAJOR=254\nMINOR=${minor}\nDEVNAME=${disk}\nDEVTYPE=disk\n`);
    fs.writeFileSync(path.join(dd, "dev"), `254:${minor++}\n`);
    fs.symlinkSync(`../../devices/virtual/block/${disk}`, path.join(root, "sys/class/block", disk));
    fs.writeFileSync(path.join(root, "dev", disk), d.gpt ?? Buffer.alloc(4096));
    for (const [n, label] of Object.entries(d.parts)) {
      const name = `${disk}${n}`;
      const pd = path.join(dd, name);
      fs.mkdirSync(pd);
      fs.writeFileSync(
        path.join(pd, "uevent"),
        `DEVNAME=${name}\nDEVTYPE=partition\nPARTN=${n}\n${label ? `PARTNAME=${label}\n` : ""}`,
      );
      fs.writeFileSync(path.join(pd, "partition"), `${n}\n`);
      fs.writeFileSync(path.join(pd, "dev"), `254:${minor++}\n`);
      fs.symlinkSync(`../../devices/virtual/block/${disk}/${name}`, path.join(root, "sys/class/block", name));
      fs.writeFileSync(path.join(root, "dev", name), "");
    }
  }
  return root;
}

describe("volume discovery", () => {
  it("by partition label, refusing duplicates", () => {
    const root = fakeRoot({ vda: { parts: { 1: "esp", 2: "root" } } });
    expect(findDevice(vol({ partlabel: "root" }), root)).toBe(path.join(root, "dev/vda2"));
    expect(findDevice(vol({ partlabel: "none" }), root)).toBeUndefined();
    const two = fakeRoot({ vda: { parts: { 2: "root" } }, vdb: { parts: { 1: "root" } } });
    expect(() => findDevice(vol({ partlabel: "root" }), two)).toThrow(/on 2 partitions .*refusing to guess/);
  });

  it("by the GPT root partition type, read from the disk itself", () => {
    const root = fakeRoot({ vda: { gpt: GPT, parts: { 1: undefined, 2: undefined } }, vdb: { parts: {} } });
    expect(findDevice(vol({ gpt_auto_root: true }), root)).toBe(path.join(root, "dev/vda2"));
    const two = fakeRoot({ vda: { gpt: GPT, parts: { 2: undefined } }, vdb: { gpt: GPT, parts: { 2: undefined } } });
    expect(() => findDevice(vol({ gpt_auto_root: true }), two)).toThrow(/2 GPT root partitions/);
  });

  it("by GPT partition UUID (verity partitions), with the type checked when asked, refusing duplicates", () => {
    const uuid = "11111111-2222-3333-4444-555555555555"; // partition 2 of the fixture, type x86-64 root
    const root = fakeRoot({ vda: { gpt: GPT, parts: { 1: undefined, 2: undefined } } });
    expect(findGptPartition(root, uuid.toUpperCase())).toBe(path.join(root, "dev/vda2"));
    expect(findGptPartition(root, uuid, "4f68bce3-e8cd-4db1-96e7-fbcaf984b709")).toBe(path.join(root, "dev/vda2"));
    expect(findGptPartition(root, "11111111-2222-3333-4444-000000000000")).toBeUndefined();
    expect(() => findGptPartition(root, uuid, "2c7357ed-ebd2-46d9-aec1-23d437ec2bf5")).toThrow(
      /has type 4f68bce3-.* expected 2c7357ed-.*: refusing/,
    );
    const two = fakeRoot({ vda: { gpt: GPT, parts: { 2: undefined } }, vdb: { gpt: GPT, parts: { 2: undefined } } });
    expect(() => findGptPartition(two, uuid)).toThrow(/is on 2 partitions .*refusing to guess/);
  });

  it("LoaderDevicePartUUID restricts gpt-auto to the boot disk", () => {
    const root = fakeRoot({ vda: { gpt: GPT, parts: { 2: undefined } }, vdb: { gpt: GPT, parts: { 2: undefined } } });
    const efivars = path.join(root, "sys/firmware/efi/efivars");
    fs.mkdirSync(efivars, { recursive: true });
    // ESP unique GUID of neither disk's table: no candidate at all.
    const v = Buffer.concat([
      Buffer.from([6, 0, 0, 0]),
      Buffer.from("99999999-0000-0000-0000-000000000000\0", "utf16le"),
    ]);
    fs.writeFileSync(path.join(efivars, "LoaderDevicePartUUID-4a67b082-0a4c-41cf-b6c7-440b29bb8c4f"), v);
    expect(findDevice(vol({ gpt_auto_root: true }), root)).toBeUndefined();
  });

  it("by LUKS UUID through /dev/disk/by-uuid", () => {
    const root = fakeRoot({ vda: { parts: { 2: undefined } } });
    fs.mkdirSync(path.join(root, "dev/disk/by-uuid"), { recursive: true });
    fs.symlinkSync("../../vda2", path.join(root, "dev/disk/by-uuid/6d1e7c52-2b4f-4d3e-9a51-0c3b8f2e7a10"));
    expect(findDevice(vol({ uuid: "6D1E7C52-2B4F-4D3E-9A51-0C3B8F2E7A10" }), root)).toBe(
      path.join(root, "dev/disk/by-uuid/6d1e7c52-2b4f-4d3e-9a51-0c3b8f2e7a10"),
    );
  });

  it("waits for a late device, and gives up within the device timeout", async () => {
    const root = fakeRoot({});
    const late = path.join(root, "late.img");
    setTimeout(() => fs.writeFileSync(late, "x"), 300);
    const d = new Deadline(10_000);
    expect(await waitForDevice(vol({ device: late }), root, 5, d, silentLogger)).toBe(late);
    const t0 = Date.now();
    await expect(waitForDevice(vol({ device: path.join(root, "never") }), root, 0.5, d, silentLogger)).rejects.toThrow(
      /did not appear within 0.5s/,
    );
    expect(Date.now() - t0).toBeLessThan(1500);
    const short = new Deadline(300);
    await expect(
      waitForDevice(vol({ device: path.join(root, "never") }), root, 60, short, silentLogger),
    ).rejects.toThrow(/deadline/);
    d.dispose();
  });
});

describe("verify-root", () => {
  const UUID = "6d1e7c52-2b4f-4d3e-9a51-0c3b8f2e7a10";
  function rootWith(mounts: string, dm?: { devno: string; name: string; uuid: string }): string {
    const root = fs.mkdtempSync(path.join(os.tmpdir(), "vr-"));
    fs.mkdirSync(path.join(root, "proc/self"), { recursive: true });
    fs.writeFileSync(path.join(root, "proc/self/mountinfo"), mounts);
    if (dm) {
      const d = path.join(root, "sys/dev/block", dm.devno, "dm");
      fs.mkdirSync(d, { recursive: true });
      fs.writeFileSync(path.join(d, "name"), dm.name + "\n");
      fs.writeFileSync(path.join(d, "uuid"), dm.uuid + "\n");
    }
    return root;
  }
  const line = (devno: string, mp: string, src: string) =>
    `30 1 ${devno} / ${mp} rw,relatime shared:1 - ext4 ${src} rw\n`;
  const cryptUuid = `CRYPT-LUKS2-${UUID.replace(/-/g, "")}-root`;

  it("accepts /sysroot on our dm-crypt mapping", () => {
    const root = rootWith(line("8:1", "/", "/dev/vda1") + line("253:0", "/sysroot", "/dev/mapper/root"), {
      devno: "253:0",
      name: "root",
      uuid: cryptUuid,
    });
    expect(verifyRoot(root, "/sysroot/", [{ name: "root", uuid: UUID }]).dmName).toBe("root");
  });

  it("refuses a plaintext root, a foreign mapping, a wrong UUID and a non-crypt dm device", () => {
    const plain = rootWith(line("254:2", "/sysroot", "/dev/vda2"));
    expect(() => verifyRoot(plain, "/sysroot", [{ name: "root", uuid: UUID }])).toThrow(
      /not a device-mapper device: refusing a plaintext root/,
    );
    const other = rootWith(line("253:0", "/sysroot", "/dev/mapper/evil"), {
      devno: "253:0",
      name: "evil",
      uuid: cryptUuid.replace("-root", "-evil"),
    });
    expect(() => verifyRoot(other, "/sysroot", [{ name: "root", uuid: UUID }])).toThrow(
      /not a volume cvm-unlock opens/,
    );
    const swapped = rootWith(line("253:0", "/sysroot", "/dev/mapper/root"), {
      devno: "253:0",
      name: "root",
      uuid: `CRYPT-LUKS2-${"0".repeat(32)}-root`,
    });
    expect(() => verifyRoot(swapped, "/sysroot", [{ name: "root", uuid: UUID }])).toThrow(/expected CRYPT-LUKS2-6d1e/);
    const linear = rootWith(line("253:0", "/sysroot", "/dev/mapper/root"), {
      devno: "253:0",
      name: "root",
      uuid: "LVM-abc",
    });
    expect(() => verifyRoot(linear, "/sysroot", [{ name: "root", uuid: UUID }])).toThrow(/not dm-crypt/);
    expect(() => verifyRoot(rootWith(line("8:1", "/", "/dev/vda1")), "/sysroot", [])).toThrow(
      /nothing is mounted at \/sysroot/,
    );
  });

  it("refuses a host-chosen file system mounted below the root (mount.usr=, mount-extra=); tmpfs there is fine", () => {
    const ours = { devno: "253:0", name: "root", uuid: cryptUuid };
    const usr = rootWith(
      line("253:0", "/sysroot", "/dev/mapper/root") + line("254:16", "/sysroot/usr", "/dev/vdb"),
      ours,
    );
    expect(() => verifyRoot(usr, "/sysroot", [{ name: "root", uuid: UUID }])).toThrow(
      /\/sysroot\/usr \(ext4, mounted below the root\) is on \/dev\/vdb .* not a device-mapper device/,
    );
    const virtiofs = rootWith(
      line("253:0", "/sysroot", "/dev/mapper/root") + "31 30 0:45 / /sysroot/srv rw shared:2 - virtiofs hostshare rw\n",
      ours,
    );
    expect(() => verifyRoot(virtiofs, "/sysroot", [{ name: "root", uuid: UUID }])).toThrow(/mounted below the root/);
    const tmp = rootWith(
      line("253:0", "/sysroot", "/dev/mapper/root") + "31 30 0:40 / /sysroot/run rw shared:2 - tmpfs tmpfs rw\n",
      ours,
    );
    expect(verifyRoot(tmp, "/sysroot", [{ name: "root", uuid: UUID }]).dmName).toBe("root");
  });

  it("the visible (last) mount wins; mountinfo escapes are decoded; garbage is refused", () => {
    const m = parseMountinfo(line("253:0", "/sys\\040root", "/dev/x") + line("8:1", "/a", "/dev/y"));
    expect(m[0]!.mountPoint).toBe("/sys root");
    const root = rootWith(line("253:0", "/sysroot", "/dev/mapper/root") + line("254:2", "/sysroot", "/dev/vda2"), {
      devno: "253:0",
      name: "root",
      uuid: cryptUuid,
    });
    expect(() => verifyRoot(root, "/sysroot", [{ name: "root", uuid: UUID }])).toThrow(/plaintext root/);
    expect(() => parseMountinfo("garbage line\n")).toThrow(/malformed mountinfo/);
  });
});

describe("mountinfo from a hostile /proc (issue 10)", () => {
  it("a line ending in the ' -' separator is a volume error, not a TypeError", () => {
    for (const text of [
      "36 35 98:0 /mnt1 /sysroot rw,noatime master:1 shared:2 x -\n",
      "36 35 98:0 / /sysroot rw a b c - ext4\n",
    ]) {
      const e = (() => {
        try {
          parseMountinfo(text);
        } catch (x) {
          return x;
        }
      })();
      expect(e).toBeInstanceOf(CvmError);
      expect((e as CvmError).kind).toBe("volume");
      expect((e as CvmError).message).toMatch(/malformed mountinfo line/);
    }
  });
});
