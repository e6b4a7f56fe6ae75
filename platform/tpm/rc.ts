// TPM response codes → readable errors (TPM 2.0 Part 2 §6.6; docs/spec/tpm.md §4).
// The upper 16 bits carry the TSS/kernel layer (the kernel resource manager adds 0x000B0000 to the
// responses it synthesises); they are masked for decoding and kept for the message.
import { CvmError } from "../util/errors.ts";
import { hex32 } from "./constants.ts";

const FMT0_ERRORS: Record<number, string> = {
  0x100: "INITIALIZE",
  0x101: "FAILURE",
  0x103: "SEQUENCE",
  0x10b: "PRIVATE",
  0x119: "HMAC",
  0x120: "DISABLED",
  0x121: "EXCLUSIVE",
  0x124: "AUTH_TYPE",
  0x125: "AUTH_MISSING",
  0x126: "POLICY",
  0x127: "PCR",
  0x128: "PCR_CHANGED",
  0x12d: "UPGRADE",
  0x12e: "TOO_MANY_CONTEXTS",
  0x12f: "AUTH_UNAVAILABLE",
  0x130: "REBOOT",
  0x131: "UNBALANCED",
  0x142: "COMMAND_SIZE",
  0x143: "COMMAND_CODE",
  0x144: "AUTHSIZE",
  0x145: "AUTH_CONTEXT",
  0x146: "NV_RANGE",
  0x147: "NV_SIZE",
  0x148: "NV_LOCKED",
  0x149: "NV_AUTHORIZATION",
  0x14a: "NV_UNINITIALIZED",
  0x14b: "NV_SPACE",
  0x14c: "NV_DEFINED",
  0x150: "BAD_CONTEXT",
  0x151: "CPHASH",
  0x152: "PARENT",
  0x153: "NEEDS_TEST",
  0x154: "NO_RESULT",
  0x155: "SENSITIVE",
};

const FMT1_ERRORS: Record<number, string> = {
  0x081: "ASYMMETRIC",
  0x082: "ATTRIBUTES",
  0x083: "HASH",
  0x084: "VALUE",
  0x085: "HIERARCHY",
  0x087: "KEY_SIZE",
  0x088: "MGF",
  0x089: "MODE",
  0x08a: "TYPE",
  0x08b: "HANDLE",
  0x08c: "KDF",
  0x08d: "RANGE",
  0x08e: "AUTH_FAIL",
  0x08f: "NONCE",
  0x090: "PP",
  0x092: "SCHEME",
  0x095: "SIZE",
  0x096: "SYMMETRIC",
  0x097: "TAG",
  0x098: "SELECTOR",
  0x09a: "INSUFFICIENT",
  0x09b: "SIGNATURE",
  0x09c: "KEY",
  0x09d: "POLICY_FAIL",
  0x09f: "INTEGRITY",
  0x0a0: "TICKET",
  0x0a1: "RESERVED_BITS",
  0x0a2: "BAD_AUTH",
  0x0a3: "EXPIRED",
  0x0a4: "POLICY_CC",
  0x0a5: "BINDING",
  0x0a6: "CURVE",
  0x0a7: "ECC_POINT",
};

const WARNINGS: Record<number, string> = {
  0x901: "CONTEXT_GAP",
  0x902: "OBJECT_MEMORY",
  0x903: "SESSION_MEMORY",
  0x904: "MEMORY",
  0x905: "SESSION_HANDLES",
  0x906: "OBJECT_HANDLES",
  0x907: "LOCALITY",
  0x908: "YIELDED",
  0x909: "CANCELED",
  0x90a: "TESTING",
  0x910: "REFERENCE_H0",
  0x911: "REFERENCE_H1",
  0x912: "REFERENCE_H2",
  0x913: "REFERENCE_H3",
  0x914: "REFERENCE_H4",
  0x915: "REFERENCE_H5",
  0x916: "REFERENCE_H6",
  0x918: "REFERENCE_S0",
  0x919: "REFERENCE_S1",
  0x91a: "REFERENCE_S2",
  0x91b: "REFERENCE_S3",
  0x91c: "REFERENCE_S4",
  0x91d: "REFERENCE_S5",
  0x91e: "REFERENCE_S6",
  0x920: "NV_RATE",
  0x921: "LOCKOUT",
  0x922: "RETRY",
  0x923: "NV_UNAVAILABLE",
};

/** Base codes callers test for (after decodeRc). */
export const TPM_RC = {
  SUCCESS: 0x000,
  INITIALIZE: 0x100,
  COMMAND_CODE: 0x143,
  NV_RANGE: 0x146,
  NV_LOCKED: 0x148,
  NV_AUTHORIZATION: 0x149,
  NV_UNINITIALIZED: 0x14a,
  NV_SPACE: 0x14b,
  NV_DEFINED: 0x14c,
  VALUE: 0x084,
  HANDLE: 0x08b,
  AUTH_FAIL: 0x08e,
  SCHEME: 0x092,
  BAD_AUTH: 0x0a2,
  YIELDED: 0x908,
  REFERENCE_H0: 0x910,
  TESTING: 0x90a,
  LOCKOUT: 0x921,
  RETRY: 0x922,
} as const;

export interface DecodedRc {
  raw: number;
  /** Layer bits (rc >>> 16), e.g. 11 when the kernel resource manager answered. */
  layer: number;
  /** The base code without parameter/handle/session numbers, e.g. 0x08B for TPM_RC_HANDLE. */
  code: number;
  /** "TPM_RC_HANDLE", "TPM_RC_RETRY", "TPM_RC_VENDOR(0x...)" ... */
  name: string;
  format: "zero" | "one";
  kind: "error" | "warning" | "vendor" | "tpm1.2";
  /** Format-one: which parameter / handle / session the code refers to (1-based). */
  parameter?: number;
  handle?: number;
  session?: number;
}

export function decodeRc(rc: number): DecodedRc {
  const raw = rc >>> 0;
  const layer = raw >>> 16;
  const v = raw & 0xffff;
  if (v & 0x080) {
    const code = 0x080 + (v & 0x03f);
    const out: DecodedRc = {
      raw,
      layer,
      code,
      name: `TPM_RC_${FMT1_ERRORS[code] ?? `0x${code.toString(16)}`}`,
      format: "one",
      kind: "error",
    };
    const n = (v >>> 8) & 0xf;
    if (v & 0x040) out.parameter = n;
    else if (v & 0x800) out.session = n & 0x7;
    else out.handle = n & 0x7;
    return out;
  }
  if (!(v & 0x100))
    return {
      raw,
      layer,
      code: v,
      name: v === 0 ? "TPM_RC_SUCCESS" : `TPM1.2_RC(0x${v.toString(16)})`,
      format: "zero",
      kind: "tpm1.2",
    };
  if (v & 0x400)
    return { raw, layer, code: v, name: `TPM_RC_VENDOR(0x${v.toString(16)})`, format: "zero", kind: "vendor" };
  if (v & 0x800) {
    const code = 0x900 + (v & 0x7f);
    return {
      raw,
      layer,
      code,
      name: `TPM_RC_${WARNINGS[code] ?? `WARN_0x${code.toString(16)}`}`,
      format: "zero",
      kind: "warning",
    };
  }
  const code = 0x100 + (v & 0x7f);
  return {
    raw,
    layer,
    code,
    name: `TPM_RC_${FMT0_ERRORS[code] ?? `0x${code.toString(16)}`}`,
    format: "zero",
    kind: "error",
  };
}

/** "TPM_RC_HANDLE (handle 1)" etc. */
export function describeRc(rc: number): string {
  const d = decodeRc(rc);
  const where =
    d.parameter !== undefined
      ? ` (parameter ${d.parameter})`
      : d.handle !== undefined
        ? ` (handle ${d.handle})`
        : d.session !== undefined
          ? ` (session ${d.session})`
          : "";
  const layer = d.layer === 11 ? ", from the kernel resource manager" : d.layer ? `, layer ${d.layer}` : "";
  return `${d.name}${where} [rc ${hex32(d.raw)}${layer}]`;
}

const HINTS: Partial<Record<number, string>> = {
  [TPM_RC.INITIALIZE]: "the TPM was not started (TPM2_Startup); on swtpm use --flags startup-clear",
  [TPM_RC.LOCKOUT]: "the TPM is in dictionary-attack lockout; wait or clear it with the lockout authorization",
  [TPM_RC.AUTH_FAIL]: "wrong authorization value (this counts towards dictionary-attack lockout)",
  [TPM_RC.BAD_AUTH]: "wrong authorization value",
  [TPM_RC.NV_UNINITIALIZED]: "the NV index was defined but never written",
  [TPM_RC.COMMAND_CODE]: "this TPM does not implement the command",
};

/** A TPM answered a command with a non-zero response code. */
export class TpmError extends CvmError {
  readonly rc: number;
  readonly decoded: DecodedRc;
  readonly command: string;
  constructor(command: string, rc: number, context = "") {
    const decoded = decodeRc(rc);
    const hint = HINTS[decoded.code];
    super("platform", `TPM2_${command}${context ? ` ${context}` : ""} failed: ${describeRc(rc)}`, hint ? { hint } : {});
    this.name = "TpmError";
    this.rc = rc >>> 0;
    this.decoded = decoded;
    this.command = command;
  }
  /** True when the base code (without parameter/handle numbers and layer) equals `code`. */
  is(code: number): boolean {
    return this.decoded.code === code;
  }
}

export function isTpmRc(e: unknown, code: number): e is TpmError {
  return e instanceof TpmError && e.is(code);
}

/** The only codes worth resending the identical command for (as tpm2-tss ESAPI does). */
export function isRetryable(rc: number): boolean {
  const c = decodeRc(rc).code;
  return c === TPM_RC.RETRY || c === TPM_RC.TESTING || c === TPM_RC.YIELDED;
}
