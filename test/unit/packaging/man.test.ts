import { describe, expect, it } from "vitest";
import { inline, markdownToMan, type ManPage } from "../../../packaging/man.ts";

const PAGE: ManPage = { name: "x", section: 1, summary: "s", version: "1.0.0", date: "2026-01-01", seeAlso: [] };

describe("markdown -> roff", () => {
  it("code and bold become bold, links keep their text, hyphens and backslashes are escaped", () => {
    expect(inline("use `--out-fd N` or **never** [CONFIG.md](CONFIG.md)")).toBe(
      "use \\fB\\-\\-out\\-fd N\\fR or \\fBnever\\fR CONFIG.md",
    );
    expect(inline("a\\b")).toBe("a\\eb");
  });

  it("a text line that starts with a roff control character is neutralised", () => {
    const roff = markdownToMan(".config is read\n'quoted' too\n", PAGE);
    expect(roff).toContain("\n\\&.config is read 'quoted' too\n");
    const code = markdownToMan("```\n.TH FORGED\n```\n", PAGE);
    expect(code).toContain("\n\\&.TH FORGED\n");
    expect(code.match(/^\.TH /gm)).toHaveLength(1);
  });

  it("headings, bullets and tables map to .SH, .IP and tbl; a cell with the tbl separator is refused", () => {
    const roff = markdownToMan(
      "## Exit codes\n\n* one\n  continued\n\n| a | b |\n|---|---|\n| `1` | x \\| y |\n",
      PAGE,
    );
    expect(roff).toMatch(/^\.SH EXIT CODES$/m);
    expect(roff).toContain(".IP \\(bu 2\none continued\n");
    expect(roff).toContain(".TS\nallbox tab(@);\nlb lbx\nl lx.\na@T{\nb\nT}\n\\fB1\\fR@T{\nx | y\nT}\n.TE");
    expect(() => markdownToMan("| a |\n|---|\n| me@host |\n", PAGE)).toThrow(/tbl column separator/);
  });

  it("the page header names the page, version and date; tbl is requested", () => {
    const roff = markdownToMan("text\n", { ...PAGE, seeAlso: ["cryptsetup(8)"] });
    expect(roff.split("\n").slice(0, 2)).toEqual(["'\\\" t", '.TH X 1 2026-01-01 "cvm-unlock 1.0.0" "cvm-unlock"']);
    expect(roff).toMatch(/\.SH SEE ALSO\n\\fBcryptsetup\(8\)\\fR\n$/);
  });
});
