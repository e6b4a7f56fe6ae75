// The module rules of docs/ARCHITECTURE.md, checked on the source: no import cycles in agent/ and
// platform/, platform never imports agent, util imports nothing above it, and no barrels (a module
// never re-exports another module's names: import from the module that defines them).
import * as fs from "node:fs";
import * as path from "node:path";
import { describe, expect, it } from "vitest";

const REPO = path.resolve(import.meta.dirname, "../..");
const TREES = ["agent", "platform"];

function tsFiles(dir: string): string[] {
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = path.join(dir, e.name);
    return e.isDirectory() ? tsFiles(p) : e.name.endsWith(".ts") ? [p] : [];
  });
}

// Static imports and re-exports (type-only included: a type cycle is still a design cycle) and
// dynamic import("..."): lazy loading does not make a cycle acceptable.
const IMPORT_RE = /(?:^|\n)\s*(?:import|export)\s[^;]*?\sfrom\s*"([^"]+)"|import\(\s*"([^"]+)"\s*\)/g;

function importsOf(file: string, text = fs.readFileSync(file, "utf8")): string[] {
  const out: string[] = [];
  for (const m of text.matchAll(IMPORT_RE)) {
    const spec = m[1] ?? m[2]!;
    if (spec.startsWith(".")) out.push(path.resolve(path.dirname(file), spec));
  }
  return out;
}

const files = TREES.flatMap((t) => tsFiles(path.join(REPO, t)));
const graph = new Map(files.map((f) => [f, importsOf(f)]));
const rel = (f: string) => path.relative(REPO, f);

/** Strongly connected components with more than one module (or a self-import), as relative paths. */
function cycles(g: Map<string, string[]>): string[][] {
  let index = 0;
  const idx = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const onStack = new Set<string>();
  const out: string[][] = [];
  const visit = (v: string): void => {
    idx.set(v, index);
    low.set(v, index++);
    stack.push(v);
    onStack.add(v);
    for (const w of g.get(v) ?? []) {
      if (!g.has(w)) continue;
      if (!idx.has(w)) {
        visit(w);
        low.set(v, Math.min(low.get(v)!, low.get(w)!));
      } else if (onStack.has(w)) low.set(v, Math.min(low.get(v)!, idx.get(w)!));
    }
    if (low.get(v) === idx.get(v)) {
      const comp: string[] = [];
      let w: string;
      do {
        w = stack.pop()!;
        onStack.delete(w);
        comp.push(w);
      } while (w !== v);
      if (comp.length > 1 || (g.get(v) ?? []).includes(v)) out.push(comp.map(rel).sort());
    }
  };
  for (const v of g.keys()) if (!idx.has(v)) visit(v);
  return out;
}

describe("module boundaries", () => {
  it("the walker sees the tree and every relative import resolves to a file", () => {
    expect(files.length).toBeGreaterThan(100);
    const missing = [...graph].flatMap(([f, deps]) =>
      deps.filter((d) => !fs.existsSync(d)).map((d) => `${rel(f)} -> ${rel(d)}`),
    );
    expect(missing).toEqual([]);
  });

  it("finds a cycle when there is one (the check can fail)", () => {
    const a = path.join(REPO, "agent/a.ts");
    const b = path.join(REPO, "agent/b.ts");
    const fake = new Map([
      [a, importsOf(a, 'import { x } from "./b.ts";')],
      [b, importsOf(b, 'export const x = 1;\nconst later = await import("./a.ts");')],
    ]);
    expect(cycles(fake)).toEqual([["agent/a.ts", "agent/b.ts"]]);
  });

  it("has no import cycles in agent/ and platform/", () => {
    expect(cycles(graph)).toEqual([]);
  });

  it("platform/ never imports agent/ (or tests), and platform/util imports nothing above it", () => {
    const bad: string[] = [];
    for (const [f, deps] of graph) {
      const from = rel(f);
      for (const d of deps.map(rel)) {
        if (from.startsWith("platform/") && !d.startsWith("platform/")) bad.push(`${from} -> ${d}`);
        if (from.startsWith("platform/util/") && !d.startsWith("platform/util/")) bad.push(`${from} -> ${d}`);
      }
    }
    expect(bad).toEqual([]);
  });

  it("has no barrels: no module re-exports names from another module", () => {
    const reexports: string[] = [];
    for (const f of files) {
      const text = fs.readFileSync(f, "utf8");
      if (/(?:^|\n)\s*export\s+(?:type\s+)?(?:\*|\{[^}]*\})\s*from\s*"/.test(text)) reexports.push(rel(f));
      // `import { a } from "./x.ts"; export { a };` is a re-export too.
      const imported = new Set(
        [...text.matchAll(/(?:^|\n)\s*import\s+(?:type\s+)?\{([^}]*)\}\s*from/g)].flatMap((m) =>
          m[1]!.split(",").map((n) =>
            n
              .trim()
              .replace(/^type\s+/, "")
              .split(/\s+as\s+/)
              .pop()!,
          ),
        ),
      );
      for (const m of text.matchAll(/(?:^|\n)\s*export\s+(?:type\s+)?\{([^}]*)\}\s*;/g))
        for (const n of m[1]!.split(",").map(
          (x) =>
            x
              .trim()
              .replace(/^type\s+/, "")
              .split(/\s+as\s+/)[0]!,
        ))
          if (n && imported.has(n)) reexports.push(`${rel(f)}: ${n}`);
    }
    expect(reexports).toEqual([]);
  });
});
