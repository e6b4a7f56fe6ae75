import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import {
  decodeOpenedState,
  encodeOpenedState,
  readOpenedOutcome,
  readOpenedState,
  writeOpenedState,
} from "../../../agent/unlock/opened-state.ts";

const UUID = "6d1e7c52-2b4f-4d3e-9a51-0c3b8f2e7a10";
const root = { name: "root", uuid: UUID, device: "/dev/vda2" };
const dir = fs.mkdtempSync(path.join(os.tmpdir(), "opened-state-"));
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

const text = (o: unknown) => JSON.stringify(o);

describe("opened.json codec", () => {
  it("round-trips what unlock writes, with a version", () => {
    const enc = encodeOpenedState([root, { ...root, name: "data" }]);
    expect(JSON.parse(enc)).toEqual({ version: 1, volumes: [root, { ...root, name: "data" }] });
    expect(decodeOpenedState(enc, "f")).toEqual([root, { ...root, name: "data" }]);
  });

  it.each([
    ["not JSON", "{", /'\(root\)' is not JSON/],
    ["an array", text([root]), /'\(root\)' is not an object/],
    ["no version (pre-versioned or foreign)", text({ volumes: [root] }), /'version' is undefined, expected 1/],
    ["a future version", text({ version: 2, volumes: [root] }), /'version' is 2/],
    ["an unknown top-level key", text({ version: 1, volumes: [], extra: 1 }), /'extra' is not a known key/],
    ["volumes not an array", text({ version: 1, volumes: {} }), /'volumes' is not an array/],
    ["a missing uuid", text({ version: 1, volumes: [{ name: "root", device: "/d" }] }), /'volumes\[0\]\.uuid'/],
    ["an upper-case uuid", text({ version: 1, volumes: [{ ...root, uuid: UUID.toUpperCase() }] }), /\.uuid'/],
    ["a dm name with a slash", text({ version: 1, volumes: [{ ...root, name: "../x" }] }), /'volumes\[0\]\.name'/],
    ["an empty device", text({ version: 1, volumes: [{ ...root, device: "" }] }), /\.device' is not a device path/],
    ["an unknown volume key", text({ version: 1, volumes: [{ ...root, key: "x" }] }), /'volumes\[0\]\.key' is not/],
    ["too many volumes", text({ version: 1, volumes: Array(65).fill(root) }), /more than 64 entries/],
  ])("refuses %s as a volume error naming the field", (_what, input, message) => {
    expect(() => decodeOpenedState(input, "/run/cvm-unlock/opened.json")).toThrow(
      expect.objectContaining({ kind: "volume", message: expect.stringMatching(message) }),
    );
  });
});

describe("opened.json on disk", () => {
  it("writes atomically (no temporary left) and reads back; absent means nothing opened", () => {
    const f = path.join(dir, "run/cvm-unlock/opened.json");
    expect(readOpenedState(f)).toEqual([]);
    writeOpenedState(f, [root]);
    writeOpenedState(f, [root, { ...root, name: "data" }]);
    expect(readOpenedState(f).map((v) => v.name)).toEqual(["root", "data"]);
    expect(fs.readdirSync(path.dirname(f))).toEqual(["opened.json"]);
  });

  it("refuses a file larger than any state we write (bounded read)", () => {
    const f = path.join(dir, "huge.json");
    fs.writeFileSync(f, " ".repeat(65 * 1024));
    expect(() => readOpenedState(f)).toThrow(expect.objectContaining({ kind: "volume" }));
  });

  it("leave-initrd outcome is fail-safe: names, none-opened, or unknown with the problem, never a throw", () => {
    const f = path.join(dir, "outcome.json");
    expect(readOpenedOutcome(f)).toEqual({ outcome: "none-opened" });
    writeOpenedState(f, [root, { ...root, name: "data" }]);
    expect(readOpenedOutcome(f)).toEqual({ outcome: "opened:root,data" });
    fs.writeFileSync(f, text({ version: 1, volumes: [] }));
    expect(readOpenedOutcome(f)).toEqual({ outcome: "none-opened" });
    fs.writeFileSync(f, "garbage");
    const r = readOpenedOutcome(f);
    expect(r.outcome).toBe("unknown");
    expect(r.problem).toMatch(/outcome\.json: '\(root\)' is not JSON/);
    fs.rmSync(f);
    fs.mkdirSync(f); // unreadable as a file (EISDIR)
    expect(readOpenedOutcome(f).outcome).toBe("unknown");
  });
});
