// docs/CLI.md, docs/CONFIG.md and docs/UNLOCK.md are the user's contract: every command and
// visible flag, and every configuration key with its default, must be documented as the code has it.
import * as fs from "node:fs";
import * as path from "node:path";
import { describe, expect, it } from "vitest";
import { commands } from "../../../agent/commands/index.ts";
import { configSchema } from "../../../agent/config/schema.ts";
import { EXIT_CODES } from "../../../platform/util/errors.ts";

const DOCS = path.join(import.meta.dirname, "../../../docs");
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
