// A small evaluator for the Rego resource policies the test KBS must really enforce: trustee's
// allow/deny samples and the shapes `cvm-unlock bind --policy` writes. Anything outside the subset
// is refused at upload (a test double must never guess a policy into "allow"). trustee evaluates
// `data.policy.allow` with the verified token claims as `input` and
// {"plugin", "resource-path": [..], "query": {}} as `data` (kbs/src/api_server.rs).
//
// Subset (one statement per line, `#` comments):
//   package policy
//   import rego.v1                                 (optional)
//   default allow := false                         (or `= false`; required)
//   allow if { BODY }                              (several rules = OR; `allow if { ... }` over lines)
// BODY lines (AND):  REF == LIT | REF != LIT | REF in {LIT, ...} | REF | not REF
//   REF = input|data followed by .name or ["string"] segments; LIT = "string" | number | true |
//   false | ["string", ...]. An undefined REF makes its line false (`not REF`: true), as in Rego.

export class RegoSubsetError extends Error {
  override name = "RegoSubsetError";
}

type Literal = string | number | boolean | string[];
type Ref = { root: "input" | "data"; path: string[] };
type Condition =
  | { op: "==" | "!="; ref: Ref; value: Literal }
  | { op: "in"; ref: Ref; set: Literal[] }
  | { op: "truthy" | "not"; ref: Ref };

export interface CompiledPolicy {
  rules: Condition[][];
  evaluate(input: unknown, data: unknown): boolean;
}

const REF = /^(input|data)((?:\.[A-Za-z_][A-Za-z0-9_]*|\["[^"\\]*"\])*)$/;

function parseRef(text: string, line: number): Ref {
  const m = REF.exec(text.trim());
  if (!m)
    throw new RegoSubsetError(`line ${line}: ${JSON.stringify(text.trim())} is not a reference the test KBS evaluates`);
  const path = [...m[2]!.matchAll(/\.([A-Za-z_][A-Za-z0-9_]*)|\["([^"\\]*)"\]/g)].map((x) => x[1] ?? x[2]!);
  return { root: m[1] as "input" | "data", path };
}

function parseLiteral(text: string, line: number): Literal {
  const t = text.trim();
  if (/^"[^"\\]*"$/.test(t) || /^-?\d+(\.\d+)?$/.test(t) || t === "true" || t === "false") return JSON.parse(t);
  if (/^\[\s*("[^"\\]*"\s*,\s*)*("[^"\\]*"\s*)?\]$/.test(t)) return JSON.parse(t) as string[];
  throw new RegoSubsetError(`line ${line}: ${JSON.stringify(t)} is not a literal the test KBS evaluates`);
}

function parseCondition(text: string, line: number): Condition {
  let m: RegExpExecArray | null;
  if ((m = /^(.+?)\s*(==|!=)\s*(.+)$/.exec(text)))
    return { op: m[2] as "==" | "!=", ref: parseRef(m[1]!, line), value: parseLiteral(m[3]!, line) };
  if ((m = /^(.+?)\s+in\s+\{(.*)\}$/.exec(text))) {
    const items = m[2]!.trim() === "" ? [] : m[2]!.split(",").map((s) => parseLiteral(s, line));
    return { op: "in", ref: parseRef(m[1]!, line), set: items };
  }
  if ((m = /^not\s+(.+)$/.exec(text))) return { op: "not", ref: parseRef(m[1]!, line) };
  return { op: "truthy", ref: parseRef(text, line) };
}

/** Drop a `#` comment that is not inside a string literal. */
function stripComment(line: string): string {
  let inString = false;
  for (let i = 0; i < line.length; i++) {
    if (line[i] === '"') inString = !inString;
    else if (line[i] === "#" && !inString) return line.slice(0, i);
  }
  return line;
}

export function compileRegoSubset(rego: string): CompiledPolicy {
  const lines = rego.split("\n").map((l, i) => ({ text: stripComment(l).trim(), no: i + 1 }));
  let pkg = false;
  let defaultFalse = false;
  const rules: Condition[][] = [];
  let body: Condition[] | undefined;
  for (const { text, no } of lines) {
    if (text === "") continue;
    if (body) {
      if (text === "}") {
        rules.push(body);
        body = undefined;
      } else body.push(parseCondition(text, no));
      continue;
    }
    if (text === "package policy") pkg = true;
    else if (text === "import rego.v1") continue;
    else if (/^default allow :?= false$/.test(text)) defaultFalse = true;
    else if (text === "allow if {") body = [];
    else throw new RegoSubsetError(`line ${no}: ${JSON.stringify(text)} is outside the subset the test KBS evaluates`);
  }
  if (body) throw new RegoSubsetError("an `allow if {` rule is not closed");
  if (!pkg) throw new RegoSubsetError("the policy is not `package policy`");
  if (!defaultFalse) throw new RegoSubsetError("the policy has no `default allow := false`");
  return { rules, evaluate: (input, data) => rules.some((r) => r.every((c) => holds(c, input, data))) };
}

const UNDEFINED = Symbol("undefined");

function lookup(ref: Ref, input: unknown, data: unknown): unknown {
  let cur: unknown = ref.root === "input" ? input : data;
  for (const k of ref.path) {
    if (cur === null || typeof cur !== "object" || Array.isArray(cur) || !(k in cur)) return UNDEFINED;
    cur = (cur as Record<string, unknown>)[k];
  }
  return cur;
}

function equal(a: unknown, b: Literal): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}

function holds(c: Condition, input: unknown, data: unknown): boolean {
  const v = lookup(c.ref, input, data);
  switch (c.op) {
    case "not":
      return v === UNDEFINED || v === false;
    case "truthy":
      return v !== UNDEFINED && v !== false;
    case "==":
      return v !== UNDEFINED && equal(v, c.value);
    case "!=":
      return v !== UNDEFINED && !equal(v, c.value);
    case "in":
      return v !== UNDEFINED && c.set.some((s) => equal(v, s));
  }
}
