// The CvmError a promise rejects with; the test fails when it resolves or rejects with anything else.
import { expect } from "vitest";
import { CvmError } from "../../../../platform/util/errors.ts";

export async function failure(p: Promise<unknown>): Promise<CvmError> {
  const e = await p.then(
    () => undefined,
    (err: unknown) => err,
  );
  expect(e, "expected a CvmError").toBeInstanceOf(CvmError);
  return e as CvmError;
}
