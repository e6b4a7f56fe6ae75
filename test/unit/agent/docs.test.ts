// docs/CLI.md, docs/CONFIG.md and docs/UNLOCK.md are the user's contract: every command and
// visible flag, and every configuration key with its default, must be documented as the code has it.
// Comments and docs cite docs/spec/ only, and every such citation resolves in a clone of the repository.
import * as fs from "node:fs";
import * as path from "node:path";
import { describe, expect, it } from "vitest";
import { commands } from "../../../agent/commands/index.ts";
import { configSchema } from "../../../agent/config/schema.ts";
import { EXIT_CODES } from "../../../platform/util/errors.ts";

const ROOT = path.join(import.meta.dirname, "../../..");
const DOCS = path.join(ROOT, "docs");
const read = (f: string) => fs.readFileSync(path.join(DOCS, f), "utf8");

type Leaf = { path: string; def: unknown };
function leaves(shape: Record<string, { schema: unknown; default?: unknown }>, prefix = ""): Leaf[] {
  return Object.entries(shape).flatMap(([k, f]) => {
    const p = prefix ? `${prefix}.${k}` : k;
    const inner = (f.schema as { shape?: Record<string, { schema: unknown; default?: unknown }> }).shape;
    return inner ? leaves(inner, p) : [{ path: p, def: f.default }];
  });
}

/** The default column of the CONFIG.md row for `key`, without backticks. */
function documentedDefault(md: string, key: string): string | undefined {
  const row = md.split("\n").find((l) => l.startsWith(`| \`${key}\` |`));
  return row
    ?.split(/(?<!\\)\|/)[3]
    ?.trim()
    .replace(/`/g, "");
}

describe("docs match the code", () => {
  it("CLI.md names every command and every visible flag", async () => {
    const md = read("CLI.md");
    for (const entry of commands) {
      expect(md, `command ${entry.name}`).toMatch(new RegExp(`cvm-unlock ${entry.name}\\b`));
      const cmd = await entry.load();
      for (const o of cmd.options.filter((o) => !o.hidden))
        expect(md, `${entry.name} --${o.name}`).toContain(`--${o.name}`);
    }
  });

  it("CLI.md's exit code table has every error kind with its code", () => {
    const md = read("CLI.md");
    for (const [kind, code] of Object.entries(EXIT_CODES))
      expect(md, `exit ${code} ${kind}`).toMatch(new RegExp(`^\\| ${code} \\| ${kind} \\|`, "m"));
  });

  it("CONFIG.md lists every kbs/platform/top-level key with its default; UNLOCK.md every unlock key", () => {
    const config = read("CONFIG.md");
    const unlock = read("UNLOCK.md");
    for (const { path: key, def } of leaves(configSchema.shape)) {
      if (key.startsWith("unlock.")) {
        expect(unlock, key).toContain(key.split(".").at(-1)!);
        continue;
      }
      const cell = documentedDefault(config, key);
      expect(cell, `${key} has a row in CONFIG.md`).toBeDefined();
      if (def !== undefined) expect([String(def), JSON.stringify(def)], `${key} default`).toContain(cell);
    }
    for (const key of [
      "name",
      "uuid",
      "partlabel",
      "gpt_auto_root",
      "device",
      "resource",
      "pins",
      "luks2_digest_sha256",
    ])
      expect(unlock, `volumes[].${key}`).toContain(key);
  });
});

const SPEC_DIR = "docs/spec";
/** Not in the repository: the workspace notes the project started from. PROVENANCE files may name them. */
const OUTSIDE_REPO =
  /(?:\.\.\/|\/work\/)shared\/|\bshared\/(?:docs|vectors)\/|\b(?:platform-abi|boot-integration|prior-art)\.md\b/g;
const SKIP_DIRS = new Set([".git", "node_modules", "dist", ".cache", "results"]);
const SELF = path.relative(ROOT, import.meta.filename);

/** Section numbers of a note's headings ("## 1. RCAR flow" → "1", "### 1.2 /auth" → "1.2"). */
function headingSections(md: string): Set<string> {
  const out = new Set<string>();
  for (const m of md.matchAll(/^#{1,6}\s+(\d+(?:\.\d+)*)\.?\s/gm)) out.add(m[1]!);
  return out;
}

/** Everything wrong with the citations in one file: `docs/spec/X.md §N[–M][, §K]` must resolve. */
function citationProblems(file: string, text: string, specs: Map<string, Set<string>>): string[] {
  const problems: string[] = [];
  const line = (i: number) => text.slice(0, i).split("\n").length;
  if (!file.endsWith("PROVENANCE.md")) {
    for (const m of text.matchAll(OUTSIDE_REPO))
      problems.push(`${file}:${line(m.index)} cites ${m[0]}, which a clone does not have`);
  }
  if (!file.startsWith(`${SPEC_DIR}/`))
    for (const m of text.matchAll(/(?<![\w/.-])([\w-]+\.md)(?=\s*§)/g))
      if (specs.has(m[1]!)) problems.push(`${file}:${line(m.index)} cites ${m[1]} without docs/spec/`);
  const cite = /docs\/spec\/([\w-]+\.md)((?:\s*,?\s*§\d+(?:\.\d+)*(?:\s*[–-]\s*§?\d+(?:\.\d+)*)?)*)/g;
  for (const m of text.matchAll(cite)) {
    const sections = specs.get(m[1]!);
    if (!sections) {
      problems.push(`${file}:${line(m.index)} cites docs/spec/${m[1]}, which does not exist`);
      continue;
    }
    for (const [n] of m[2]!.matchAll(/\d+(?:\.\d+)*/g))
      if (!sections.has(n)) problems.push(`${file}:${line(m.index)} cites docs/spec/${m[1]} §${n}: no such section`);
  }
  return problems;
}

function repoTextFiles(dir = ""): string[] {
  return fs.readdirSync(path.join(ROOT, dir), { withFileTypes: true }).flatMap((e) => {
    const rel = path.join(dir, e.name);
    if (e.isDirectory()) return SKIP_DIRS.has(e.name) ? [] : repoTextFiles(rel);
    return e.isFile() && e.name !== "package-lock.json" ? [rel] : [];
  });
}

describe("citations resolve in a clone", () => {
  const specs = new Map(
    fs
      .readdirSync(path.join(ROOT, SPEC_DIR))
      .filter((f) => f.endsWith(".md"))
      .map((f) => [f, headingSections(fs.readFileSync(path.join(ROOT, SPEC_DIR, f), "utf8"))] as const),
  );

  it("the checker finds each kind of bad citation", () => {
    const bad = [
      "// see ../shared/docs/kbs-protocol.md §2",
      "// platform-abi.md §5.7",
      "// docs/spec/kbs-protocol.md §9.9",
      "// docs/spec/kbs-protocol.md §4.5–4.9",
      "// docs/spec/nowhere.md §1",
      "// kbs-protocol.md §2.1",
    ].join("\n");
    expect(citationProblems("x.ts", bad, specs)).toEqual([
      "x.ts:1 cites ../shared/, which a clone does not have",
      "x.ts:2 cites platform-abi.md, which a clone does not have",
      "x.ts:6 cites kbs-protocol.md without docs/spec/",
      "x.ts:3 cites docs/spec/kbs-protocol.md §9.9: no such section",
      "x.ts:4 cites docs/spec/kbs-protocol.md §4.9: no such section",
      "x.ts:5 cites docs/spec/nowhere.md, which does not exist",
    ]);
    expect(citationProblems("test/fixtures/x/PROVENANCE.md", "copied from ../shared/vectors/x", specs)).toEqual([]);
    expect(citationProblems("a.ts", "docs/spec/kbs-protocol.md §1–§5, docs/spec/tpm.md §7.", specs)).toEqual([]);
  });

  it("no file cites notes outside the repository, and every docs/spec citation names a real section", () => {
    const files = repoTextFiles().filter((f) => f !== SELF);
    expect(files.length).toBeGreaterThan(100);
    const problems = files.flatMap((f) => {
      const bytes = fs.readFileSync(path.join(ROOT, f));
      return bytes.includes(0) ? [] : citationProblems(f, bytes.toString("utf8"), specs);
    });
    expect(problems).toEqual([]);
  });

  it("docs/spec/README.md lists every note", () => {
    const index = fs.readFileSync(path.join(ROOT, SPEC_DIR, "README.md"), "utf8");
    for (const f of specs.keys()) if (f !== "README.md") expect(index, f).toContain(`](${f})`);
  });
});
