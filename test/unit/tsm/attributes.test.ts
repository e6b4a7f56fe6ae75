import { describe, expect, it } from "vitest";
import {
  explainTsmErrno,
  newEntryName,
  parseGeneration,
  parsePrivlevel,
  parseProvider,
} from "../../../platform/tsm/attributes.ts";
import { configfsMounted } from "../../../platform/tsm/mount.ts";
import { ParseError } from "../../../platform/util/errors.ts";

const t = (s: string) => new TextEncoder().encode(s);

describe("configfs-tsm attribute parsing", () => {
  it("reads the kernel's text forms", () => {
    expect(parseGeneration(t("0\n"))).toBe(0);
    expect(parseGeneration(t("4294967295\n"))).toBe(4294967295);
    expect(parseProvider(t("sev_guest\n"))).toBe("sev_guest");
    expect(parseProvider(t("tdx_guest"))).toBe("tdx_guest");
    expect(parsePrivlevel(t("2\n"))).toBe(2);
  });

  it("refuses anything else with a ParseError naming the attribute", () => {
    for (const bad of ["", "\n", "-1\n", "1 \n", "0x10\n", "1\n\n", "9999999999999999\n"])
      expect(() => parseGeneration(t(bad))).toThrow(ParseError);
    for (const bad of ["", "SEV\n", "sev guest\n", "a\u0000b", "x".repeat(65)])
      expect(() => parseProvider(t(bad))).toThrow(ParseError);
    expect(() => parsePrivlevel(t("4\n"))).toThrow(/privlevel_floor/);
  });

  it("entry names are unique and safe path components", () => {
    const names = new Set(Array.from({ length: 50 }, newEntryName));
    expect(names.size).toBe(50);
    for (const n of names) expect(n).toMatch(/^cvm-unlock-\d+-[0-9a-f]{12}$/);
  });

  it("errno explanations say what to do", () => {
    expect(explainTsmErrno("ENXIO", "x")).toMatch(/sev-guest|tdx-guest/);
    expect(explainTsmErrno("EACCES", "x")).toMatch(/root/);
  });

  it("finds a configfs mount in /proc/mounts", () => {
    expect(configfsMounted("sysfs /sys sysfs rw 0 0\nconfigfs /sys/kernel/config configfs rw,relatime 0 0\n")).toBe(
      true,
    );
    expect(configfsMounted("sysfs /sys sysfs rw 0 0\nnone /sys/kernel/config tmpfs rw 0 0\n")).toBe(false);
  });
});
