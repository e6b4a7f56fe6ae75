// verify-root with the root on LVM (mode B, RHEL's layout): the dm stack is walked through
// /sys/dev/block/MAJ:MIN/slaves down to the crypt devices, on a stand-in sysfs tree.
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { describe, expect, it } from "vitest";
import { verifyRoot } from "../../../agent/unlock/verify-root.ts";

const UUID = "6d1e7c52-2b4f-4d3e-9a51-0c3b8f2e7a10";
const OTHER = "0b6b9f4e-5d0c-4a55-8f0e-2f3a1b4c5d6e";
const crypt = (uuid: string, name: string) => `CRYPT-LUKS2-${uuid.replace(/-/g, "")}-${name}`;
const LV = "LVM-Hx2cA0cW8dHk1mlcX4lQ6aE6b1WgUqQqV0d1hVf2y2k8b2c4mQ1Z1rK9vWm5Wb1f";

interface Dev {
  block: string;
  devno: string;
  dm?: { name: string; uuid: string };
  slaves?: string[];
}

function tree(devs: Dev[], rootDevno: string): string {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), "vr-lvm-"));
  fs.mkdirSync(path.join(root, "proc/self"), { recursive: true });
  fs.writeFileSync(
    path.join(root, "proc/self/mountinfo"),
    `30 1 ${rootDevno} / /sysroot rw,relatime shared:1 - ext4 /dev/mapper/vg-root rw\n`,
  );
  for (const d of devs) {
    const dir = path.join(root, "sys/dev/block", d.devno);
    fs.mkdirSync(path.join(dir, "slaves"), { recursive: true });
    for (const s of d.slaves ?? []) fs.writeFileSync(path.join(dir, "slaves", s), "");
    if (d.dm) {
      fs.mkdirSync(path.join(dir, "dm"));
      fs.writeFileSync(path.join(dir, "dm/name"), d.dm.name + "\n");
      fs.writeFileSync(path.join(dir, "dm/uuid"), d.dm.uuid + "\n");
    }
    fs.mkdirSync(path.join(root, "sys/class/block", d.block), { recursive: true });
    fs.writeFileSync(path.join(root, "sys/class/block", d.block, "dev"), d.devno + "\n");
  }
  return root;
}

const ours = [{ name: "root", uuid: UUID }];
const cryptRoot: Dev = {
  block: "dm-0",
  devno: "253:0",
  dm: { name: "root", uuid: crypt(UUID, "root") },
  slaves: ["vda2"],
};
const lvOn = (...slaves: string[]): Dev => ({
  block: "dm-1",
  devno: "253:1",
  dm: { name: "vg-root", uuid: LV },
  slaves,
});

describe("verify-root: LVM on LUKS", () => {
  it("accepts an LV whose only PV is a crypt device we served", () => {
    const r = verifyRoot(tree([cryptRoot, lvOn("dm-0")], "253:1"), "/sysroot", ours);
    expect(r.dmName).toBe("root");
    expect(r.dmUuid).toBe(crypt(UUID, "root"));
  });

  it("refuses an LV on an unencrypted PV", () => {
    const plainPv: Dev = { block: "vdb", devno: "254:16" };
    expect(() => verifyRoot(tree([plainPv, lvOn("vdb")], "253:1"), "/sysroot", ours)).toThrow(
      /LVM volume vg-root on vdb.*not a device-mapper device: refusing a plaintext root/,
    );
  });

  it("refuses an LV spanning our crypt device and an unencrypted PV", () => {
    const plainPv: Dev = { block: "vdb", devno: "254:16" };
    expect(() => verifyRoot(tree([cryptRoot, plainPv, lvOn("dm-0", "vdb")], "253:1"), "/sysroot", ours)).toThrow(
      /on vdb.*plaintext/,
    );
  });

  it("refuses an LV with a loop device among its PVs (a file the host may have planted), even next to our crypt device", () => {
    const loopPv: Dev = { block: "loop0", devno: "7:0" };
    expect(() => verifyRoot(tree([cryptRoot, loopPv, lvOn("dm-0", "loop0")], "253:1"), "/sysroot", ours)).toThrow(
      /LVM volume vg-root on loop0.*not a device-mapper device: refusing a plaintext root/,
    );
    expect(() => verifyRoot(tree([loopPv, lvOn("loop0")], "253:1"), "/sysroot", ours)).toThrow(/on loop0.*plaintext/);
  });

  it("refuses an LV on a crypt device we did not serve (other name, or our name with another LUKS UUID)", () => {
    const foreign: Dev = { block: "dm-0", devno: "253:0", dm: { name: "evil", uuid: crypt(OTHER, "evil") } };
    expect(() => verifyRoot(tree([foreign, lvOn("dm-0")], "253:1"), "/sysroot", ours)).toThrow(
      /dm-crypt evil, which is not a volume cvm-unlock opens/,
    );
    const swapped: Dev = { block: "dm-0", devno: "253:0", dm: { name: "root", uuid: crypt(OTHER, "root") } };
    expect(() => verifyRoot(tree([swapped, lvOn("dm-0")], "253:1"), "/sysroot", ours)).toThrow(
      /expected CRYPT-LUKS2-6d1e/,
    );
  });

  it("refuses an LV with no underlying device, a non-LVM non-crypt layer, and a stack that loops", () => {
    expect(() => verifyRoot(tree([lvOn()], "253:1"), "/sysroot", ours)).toThrow(/lists no underlying device/);
    const linear: Dev = { block: "dm-0", devno: "253:0", dm: { name: "lin", uuid: "" } };
    expect(() => verifyRoot(tree([linear, lvOn("dm-0")], "253:1"), "/sysroot", ours)).toThrow(/not dm-crypt/);
    const loop: Dev = { block: "dm-1", devno: "253:1", dm: { name: "vg-root", uuid: LV }, slaves: ["dm-1"] };
    expect(() => verifyRoot(tree([loop], "253:1"), "/sysroot", ours)).toThrow(/deeper than 4 levels/);
  });
});
