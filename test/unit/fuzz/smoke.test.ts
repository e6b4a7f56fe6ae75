// CI smoke of the fuzz harness (docs/FUZZING.md): every target for a short, seeded budget, zero
// crashes and zero inputs slower than 1 s. The long run (≥ 100,000 executions per target) is a
// benchmark, run by hand with `npm run fuzz` and recorded in docs/FUZZING.md.
import { describe, expect, it } from "vitest";
import { fuzzTarget } from "../../fuzz/engine.ts";
import { TARGETS } from "../../fuzz/targets.ts";

const SEED = Number(process.env.FUZZ_SEED ?? 20261206);
/** Per target: a few thousand executions, cut at 1 s so the whole smoke stays well under a minute. */
const EXECUTIONS = 3000;
const SECONDS = 1;

describe(`fuzz smoke (seed ${SEED})`, () => {
  for (const t of TARGETS) {
    it(`${t.name}: no crash, no slow input`, async () => {
      const s = await fuzzTarget(t, { seed: SEED, executions: EXECUTIONS, seconds: SECONDS });
      const findings = s.findings.map((f) => `${f.kind} at iteration ${f.iteration}: ${f.detail}`);
      expect(findings).toEqual([]);
      expect(s.crashes + s.slow).toBe(0);
      // The seeds always run, and at least one of them must parse: a target whose fixtures no
      // longer parse fuzzes nothing but the first check.
      expect(s.executions).toBeGreaterThan(0);
      expect(s.accepted).toBeGreaterThan(0);
    });
  }
});
