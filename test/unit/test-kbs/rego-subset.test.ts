// The test KBS's Rego subset: what it evaluates must mean what OPA/regorus would make of it, and
// everything else is refused (never guessed into "allow").
import { describe, expect, it } from "vitest";
import { buildResourcePolicy } from "../../../agent/provision/policy-template.ts";
import { compileRegoSubset, RegoSubsetError } from "../../kbs/rego-subset.ts";

const Z = "0".repeat(64);
const A = "a".repeat(64);
const data = (tag = "root") => ({ plugin: "resource", "resource-path": ["default", "key", tag], query: {} });
const claims = (ev: Record<string, unknown>) => ({ submods: { cpu0: { "ear.veraison.annotated-evidence": ev } } });

describe("rego subset", () => {
  it("evaluates the tpm-pcrs template: every PCR must be one of its values, for that resource only", () => {
    const p = compileRegoSubset(
      buildResourcePolicy(
        "default/key/root",
        [{ kind: "tpm-pcrs", pcrs: [7, 12] }],
        new Map([
          [7, [Z, A]],
          [12, [Z]],
        ]),
      ),
    );
    expect(p.evaluate(claims({ tpm: { pcr07: A, pcr12: Z } }), data())).toBe(true);
    expect(p.evaluate(claims({ tpm: { pcr07: Z, pcr12: Z } }), data())).toBe(true);
    expect(p.evaluate(claims({ tpm: { pcr07: Z, pcr12: A } }), data())).toBe(false);
    expect(p.evaluate(claims({ tpm: { pcr07: Z } }), data())).toBe(false); // pcr12 undefined
    expect(p.evaluate(claims({ tpm: { pcr07: Z, pcr12: Z } }), data("other"))).toBe(false);
    expect(p.evaluate(claims({ sample: { svn: "1" } }), data())).toBe(false);
  });

  it("evaluates the snp-measurement and init-data templates (debug policy must be off)", () => {
    const m = "b".repeat(96);
    const p = compileRegoSubset(
      buildResourcePolicy("default/key/root", [
        { kind: "snp-measurement", measurement: m },
        { kind: "init-data", digest: Z },
      ]),
    );
    const ok = { snp: { measurement: m, policy_debug_allowed: false }, init_data: Z };
    expect(p.evaluate(claims(ok), data())).toBe(true);
    expect(p.evaluate(claims({ ...ok, snp: { measurement: m, policy_debug_allowed: true } }), data())).toBe(false);
    expect(p.evaluate(claims({ ...ok, init_data: A }), data())).toBe(false);
    expect(p.evaluate(claims({ snp: ok.snp }), data())).toBe(false);
  });

  it("several allow rules are OR, `not` is true for undefined, `!=` needs a defined value", () => {
    const p = compileRegoSubset(`package policy
default allow = false
# comment with "quotes" and # inside
allow if {
  data.plugin == "resource"
  not input["submods"]["cpu0"]["ear.veraison.annotated-evidence"]["sample"]
}
allow if {
  input.x != 1
}`);
    expect(p.rules).toHaveLength(2);
    expect(p.evaluate(claims({ tpm: {} }), data())).toBe(true);
    expect(p.evaluate(claims({ sample: {} }), data())).toBe(false);
    expect(p.evaluate({ ...claims({ sample: {} }), x: 2 }, data())).toBe(true);
    expect(p.evaluate({ ...claims({ sample: {} }), x: 1 }, data())).toBe(false);
  });

  it("trustee's deny_all compiles and denies; anything outside the subset is refused", () => {
    expect(compileRegoSubset("package policy\n\ndefault allow = false\n").evaluate({}, data())).toBe(false);
    for (const rego of [
      'package policy\ndefault allow = false\nplugin = data.plugin\nallow if {\n plugin == "resource"\n}\n', // allow_all's alias
      "package policy\ndefault allow := false\nallow if {\n count(input.submods) > 0\n}\n",
      "package policy\ndefault allow := true\n",
      "package other\ndefault allow := false\n",
      "package policy\ndefault allow := false\nallow if {\n input.a == data.b\n}\n",
      "package policy\ndefault allow := false\nallow if {\n",
      "package policy\ndefault allow := false\nallow := true\n",
    ])
      expect(() => compileRegoSubset(rego), rego).toThrow(RegoSubsetError);
  });
});
