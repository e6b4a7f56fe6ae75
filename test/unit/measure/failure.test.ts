// The failure marker's encoding, the report the agent leaves for the backstop unit (bounded,
// shape-checked: /run is writable by more than us), and the one console line.
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { describe, expect, it } from "vitest";
import { failureEvent, rtmrDigest } from "../../../agent/measure/events.ts";
import { consoleSafe, failureLine, readFailureReport, type FailureReport } from "../../../agent/measure/failure.ts";
import { createHash } from "node:crypto";
import { silentLogger } from "../../../platform/util/log.ts";

const report: FailureReport = {
  v: 1,
  command: "unlock",
  exit_code: 8,
  kind: "kbs-refused",
  reason: "KBS https://10.0.2.2:47443 refused the attestation (401)",
  marker: "measured",
  marker_detail: "PCR 15",
};

describe("failure marker", () => {
  it("encodes the exit code like leave-initrd: plain text, hashed per bank", () => {
    expect(failureEvent(8)).toBe("cvm-unlock:failed:8");
    expect(failureEvent(16)).toBe("cvm-unlock:failed:16");
    expect(failureEvent(143)).toBe("cvm-unlock:failed:143");
    expect(failureEvent(undefined)).toBe("cvm-unlock:failed:unknown");
    expect(Buffer.from(rtmrDigest(failureEvent(8))).toString("hex")).toBe(
      createHash("sha384").update("cvm-unlock:failed:8").digest("hex"),
    );
  });

  it("refuses an exit code that is not one (0 is success, not a failure)", () => {
    for (const bad of [0, -1, 256, 1.5, NaN]) expect(() => failureEvent(bad), String(bad)).toThrow(/not 1\.\.255/);
  });
});

describe("failure report", () => {
  const write = (content: string | Buffer) => {
    const p = path.join(fs.mkdtempSync(path.join(os.tmpdir(), "failure-")), "failed.json");
    fs.writeFileSync(p, content);
    return p;
  };

  it("round-trips a well-formed report; a missing one is undefined", () => {
    expect(readFailureReport(write(JSON.stringify(report)), silentLogger)).toEqual(report);
    expect(readFailureReport("/nonexistent/failed.json", silentLogger)).toBeUndefined();
  });

  it("ignores malformed, wrong-version, out-of-range and oversized reports (the backstop then measures itself)", () => {
    for (const bad of [
      "not json",
      "null",
      JSON.stringify({ ...report, v: 2 }),
      JSON.stringify({ ...report, exit_code: 0 }),
      JSON.stringify({ ...report, exit_code: "8" }),
      JSON.stringify({ ...report, marker: "yes" }),
      JSON.stringify({ ...report, reason: 7 }),
      JSON.stringify({ ...report, reason: "x".repeat(20_000) }),
    ])
      expect(readFailureReport(write(bad), silentLogger), bad.slice(0, 40)).toBeUndefined();
  });
});

describe("the console line", () => {
  it("is one line with the command, exit code, kind, reason, the marker and what happens next", () => {
    const line = failureLine(report, { marker: "measured", detail: "PCR 15 + RTMR 3" }, "poweroff");
    expect(line).toBe(
      "cvm-unlock: unlock failed with exit 8 (kbs-refused): KBS https://10.0.2.2:47443 refused the attestation (401); failure marker measured into PCR 15 + RTMR 3; powering off",
    );
    expect(line).not.toMatch(/\n/);
  });

  it("says when the exit code is unknown and when the marker could not be measured", () => {
    expect(failureLine(undefined, { marker: "failed", detail: "TPM_RC_LOCALITY" }, "emergency")).toBe(
      "cvm-unlock: initrd failure without a report from the agent (exit code unknown); failure marker NOT measured: TPM_RC_LOCALITY; entering emergency mode",
    );
    expect(failureLine(report, { marker: "none", detail: "no TPM or RTMR present" }, undefined)).toMatch(
      /failure marker not measured: no TPM or RTMR present$/,
    );
  });

  it("flattens control characters and bounds host-supplied text", () => {
    const hostile = `KBS said: \u001b[2J\rlogin: root\n# ${"A".repeat(1000)}`;
    const line = failureLine({ ...report, reason: hostile }, { marker: "measured", detail: "PCR 15" }, "poweroff");
    expect(line).not.toMatch(/[\u0000-\u001f]/);
    expect(line.length).toBeLessThan(500);
    expect(consoleSafe("a\tb\u0085c")).toBe("a b c");
    expect(consoleSafe("x".repeat(400))).toHaveLength(300);
  });
});
