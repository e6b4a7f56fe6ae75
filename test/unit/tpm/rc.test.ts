import { describe, expect, it } from "vitest";
import { TPM_RC, TpmError, decodeRc, describeRc, isRetryable } from "../../../platform/tpm/rc.ts";

describe("response codes", () => {
  it.each([
    [0x1c4, { code: TPM_RC.VALUE, name: "TPM_RC_VALUE", parameter: 1, format: "one" }],
    [0x1cb, { code: TPM_RC.HANDLE, name: "TPM_RC_HANDLE", parameter: 1 }],
    [0x18b, { code: TPM_RC.HANDLE, name: "TPM_RC_HANDLE", handle: 1 }],
    [0x2d2, { code: TPM_RC.SCHEME, name: "TPM_RC_SCHEME", parameter: 2 }],
    [0x98e, { code: TPM_RC.AUTH_FAIL, session: 1 }],
    [0x100, { code: TPM_RC.INITIALIZE, name: "TPM_RC_INITIALIZE", format: "zero", kind: "error" }],
    [0x14a, { name: "TPM_RC_NV_UNINITIALIZED" }],
    [0x922, { code: TPM_RC.RETRY, name: "TPM_RC_RETRY", kind: "warning" }],
    [0x90a, { name: "TPM_RC_TESTING" }],
    [0x908, { name: "TPM_RC_YIELDED" }],
    [0x921, { name: "TPM_RC_LOCKOUT" }],
    [0x000b0143, { code: TPM_RC.COMMAND_CODE, layer: 11, name: "TPM_RC_COMMAND_CODE" }],
    [0x0000057f, { kind: "vendor" }],
    [0x0000001e, { kind: "tpm1.2" }],
  ])("decodes %i", (rc, want) => {
    expect(decodeRc(rc)).toMatchObject(want);
  });

  it("describes layer, parameter and hex", () => {
    expect(describeRc(0x000b0143)).toBe("TPM_RC_COMMAND_CODE [rc 0x000b0143, from the kernel resource manager]");
    expect(describeRc(0x2d2)).toBe("TPM_RC_SCHEME (parameter 2) [rc 0x000002d2]");
    const e = new TpmError("NV_Read", 0x14a);
    expect(e.message).toBe("TPM2_NV_Read failed: TPM_RC_NV_UNINITIALIZED [rc 0x0000014a]");
    expect(e.hint).toMatch(/never written/);
    expect(e.exitCode).toBe(4);
  });

  it("retries only RETRY, TESTING and YIELDED (also with the kernel layer bits)", () => {
    expect([0x922, 0x90a, 0x908, 0x000b0922].map(isRetryable)).toEqual([true, true, true, true]);
    expect([0x921, 0x98e, 0x101, 0x902, 0x909].map(isRetryable)).toEqual([false, false, false, false, false]);
  });
});
