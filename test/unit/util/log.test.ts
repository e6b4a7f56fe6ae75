import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { describe, expect, it } from "vitest";
import { createLogger, defaultLogFormat, type LogFormat } from "../../../platform/util/log.ts";

function lines(format: LogFormat): string[] {
  const out: string[] = [];
  const log = createLogger({ format, verbose: true, write: (l) => out.push(l) });
  log.error("no route", { endpoint: "https://kbs" });
  log.info("opened\nroot");
  log.debug("detail");
  return out;
}

describe("log formats", () => {
  it("journal: priority prefix only, journald names the program itself", () => {
    expect(lines("journal")).toEqual(["<3>no route endpoint=https://kbs\n", "<6>opened root\n", "<7>detail\n"]);
  });

  it("kmsg: priority prefix and the program name, which the kernel log would not add", () => {
    expect(lines("kmsg")[0]).toBe("<3>cvm-unlock: no route endpoint=https://kbs\n");
  });

  it("text: no priority prefix at all", () => {
    expect(lines("text")).toEqual(["error: no route (endpoint=https://kbs)\n", "opened root\n", "debug: detail\n"]);
  });

  it("one line per message: a newline in a message cannot forge a second priority", () => {
    const out: string[] = [];
    createLogger({ format: "journal", verbose: false, write: (l) => out.push(l) }).warning("a\n<0>forged");
    expect(out).toEqual(["<4>a <0>forged\n"]);
  });
});

describe("defaultLogFormat", () => {
  it("journal only when JOURNAL_STREAM names fd 2's dev:ino", () => {
    expect(defaultLogFormat({ devIno: "27:4242" }, "27:4242")).toBe("journal");
  });

  it("a JOURNAL_STREAM inherited by a process whose stderr was redirected is ignored", () => {
    expect(defaultLogFormat({ devIno: "27:4243" }, "27:4242")).toBe("text");
    expect(defaultLogFormat({ devIno: "27:4243", isTTY: true }, "27:4242")).toBe("text");
  });

  it("kmsg on /dev/kmsg, plain text on a terminal, a pipe or a file", () => {
    expect(defaultLogFormat({ devIno: "5:11", isKmsg: true }, undefined)).toBe("kmsg");
    expect(defaultLogFormat({ devIno: "5:1", isTTY: true }, undefined)).toBe("text");
    expect(defaultLogFormat({ devIno: "13:99" }, undefined)).toBe("text");
    expect(defaultLogFormat({}, "13:99")).toBe("text");
  });

  it("reads fd 2 of this process in systemd's decimal dev:ino notation", () => {
    // vitest's stderr is a pipe or a file here; compare with what stat reports for it
    const st = fs.fstatSync(2, { bigint: true });
    expect(defaultLogFormat(undefined, `${st.dev}:${st.ino}`)).toBe("journal");
    expect(defaultLogFormat(undefined, `${st.dev}:${st.ino + 1n}`)).not.toBe("journal");
    const f = path.join(fs.mkdtempSync(path.join(os.tmpdir(), "log-")), "x");
    fs.writeFileSync(f, "");
    const other = fs.statSync(f, { bigint: true });
    expect(defaultLogFormat(undefined, `${other.dev}:${other.ino}`)).not.toBe("journal");
  });
});
