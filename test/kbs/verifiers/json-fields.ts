// Field access for evidence JSON in the test verifiers: a failure names the tee and the field, and
// is a plain Error that the test KBS turns into a refusal (as trustee's serde errors are).

export function fail(tee: string, problem: string): never {
  throw new Error(`${tee} evidence: ${problem}`);
}

export function jsonObject(v: unknown, tee: string, what: string): Record<string, unknown> {
  if (v === null || typeof v !== "object" || Array.isArray(v)) fail(tee, `${what} must be a JSON object`);
  return v as Record<string, unknown>;
}
