// docs/RELIABILITY.md's fault matrix names, for every fault, the test that proves the outcome.
// This keeps it honest: at least 40 rows, each with an outcome (recovered or an exit code the
// agent really uses) and at least one citation `file` › "test name" whose test exists in that file.
import * as fs from "node:fs";
import * as path from "node:path";
import { describe, expect, it } from "vitest";
import { EXIT_CODES } from "../../../platform/util/errors.ts";

const ROOT = path.join(import.meta.dirname, "../../..");
const CITATION = /`(test\/[^`]+?\.test\.ts)` › "([^"]+)"/g;

interface Row {
  n: string;
  fault: string;
  outcome: string;
  citations: { file: string; name: string }[];
}

export function matrixRows(md: string): Row[] {
  return md
    .split("\n")
    .filter((l) => /^\| \d+ \|/.test(l))
    .map((l) => {
      const [n = "", fault = "", outcome = "", proof = ""] = l.split(" | ").map((c) => c.replace(/^\| /, ""));
      return { n, fault, outcome, citations: [...proof.matchAll(CITATION)].map((m) => ({ file: m[1]!, name: m[2]! })) };
    });
}

/** Every string literal of a test file as a matcher: template `${...}` and it.each `%s` match anything. */
function titleMatchers(source: string): RegExp[] {
  const out: RegExp[] = [];
  // One scan per quote character, never across a line, so an apostrophe in a comment cannot shift the rest.
  const literals = [/"((?:\\.|[^"\\\n])*)"/g, /'((?:\\.|[^'\\\n])*)'/g, /`((?:\\.|[^`\\\n])*)`/g].flatMap((re) => [
    ...source.matchAll(re),
  ]);
  for (const m of literals) {
    const raw = m[1]!.replace(/\\(["'`\\])/g, "$1");
    if (raw.length < 10) continue;
    const parts = raw.split(/\$\{[^}]*\}|%[sdi]/).map((p) => p.replace(/[.*+?^${}()|[\]\\]/g, "\\$&"));
    out.push(new RegExp(`^${parts.join(".+?")}$`));
  }
  return out;
}

const sources = new Map<string, RegExp[]>();
export function testExists(file: string, name: string): boolean {
  const full = path.join(ROOT, file);
  if (!fs.existsSync(full)) return false;
  if (!sources.has(file)) sources.set(file, titleMatchers(fs.readFileSync(full, "utf8")));
  return sources.get(file)!.some((re) => re.test(name));
}

describe("docs/RELIABILITY.md fault matrix", () => {
  const rows = matrixRows(fs.readFileSync(path.join(ROOT, "docs", "RELIABILITY.md"), "utf8"));

  it("has at least 40 numbered rows, numbered in order", () => {
    expect(rows.length).toBeGreaterThanOrEqual(40);
    expect(rows.map((r) => Number(r.n))).toEqual(rows.map((_, i) => i + 1));
  });

  it("every row states an outcome: recovered, or failed closed with an exit code the agent uses", () => {
    const codes = new Set([...Object.values(EXIT_CODES), 143]);
    for (const r of rows) {
      const exits = [...r.outcome.matchAll(/exit (\d+)/g)].map((m) => Number(m[1]));
      expect(/recovered/.test(r.outcome) || exits.length > 0, `row ${r.n}: ${r.outcome}`).toBe(true);
      for (const e of exits) expect(codes.has(e), `row ${r.n}: exit ${e}`).toBe(true);
    }
  });

  it("every row cites at least one test, and every cited test exists in the cited file", () => {
    for (const r of rows) {
      expect(r.citations.length, `row ${r.n} (${r.fault}) cites no test`).toBeGreaterThan(0);
      for (const c of r.citations) expect(testExists(c.file, c.name), `row ${r.n}: ${c.file} › "${c.name}"`).toBe(true);
    }
  });

  it("the checker itself catches a renamed test, a wrong file and a template that does not fit", () => {
    expect(testExists("test/unit/kbs/resilience.test.ts", "dropped connection at attest: recovered")).toBe(true);
    expect(testExists("test/unit/kbs/resilience.test.ts", "dropped connection at attest: ignored")).toBe(false);
    expect(testExists("test/unit/kbs/client.test.ts", "dropped connection at attest: recovered")).toBe(false);
    expect(testExists("test/unit/kbs/no-such.test.ts", "dropped connection at attest: recovered")).toBe(false);
    expect(matrixRows('| 1 | f | recovered | `test/a.test.ts` › "x y" |')[0]!.citations).toEqual([
      { file: "test/a.test.ts", name: "x y" },
    ]);
  });
});
