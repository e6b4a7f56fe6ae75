// Typed errors. Every error the agent can raise maps to one documented exit code
// (docs/CLI.md) and carries a message that says what was wrong and what to do.

export type ErrorKind =
  | "usage" // bad command line
  | "config" // configuration invalid or not allowed
  | "platform" // no usable evidence source, device/driver problem
  | "evidence" // evidence could not be collected or is malformed (host input)
  | "network" // KBS unreachable / transport failure after retries
  | "tls" // TLS verification failed (wrong CA, hostname)
  | "kbs-refused" // KBS denied (attestation failed, policy deny)
  | "kbs-protocol" // KBS answered something that is not the protocol
  | "resource-missing" // resource not found at the KBS
  | "decrypt" // JWE could not be decrypted / authenticated
  | "deadline" // overall deadline exceeded
  | "unlock" // cryptsetup failed for a reason other than the key
  | "wrong-key" // cryptsetup says the key does not open the volume
  | "volume" // volume identity mismatch, missing device, refused root
  | "unsafe-cmdline" // the kernel command line opens a shell to the host (rd.break, init=, ...)
  | "internal";

export const EXIT_CODES: Record<ErrorKind, number> = {
  internal: 1,
  usage: 2,
  config: 3,
  platform: 4,
  evidence: 5,
  network: 6,
  tls: 7,
  "kbs-refused": 8,
  "kbs-protocol": 9,
  "resource-missing": 10,
  decrypt: 11,
  deadline: 12,
  unlock: 13,
  "wrong-key": 14,
  volume: 15,
  "unsafe-cmdline": 16,
};

export class CvmError extends Error {
  readonly kind: ErrorKind;
  readonly hint: string | undefined;
  constructor(kind: ErrorKind, message: string, opts: { hint?: string; cause?: unknown } = {}) {
    super(message, opts.cause !== undefined ? { cause: opts.cause } : undefined);
    this.name = "CvmError";
    this.kind = kind;
    this.hint = opts.hint;
  }
  get exitCode(): number {
    return EXIT_CODES[this.kind];
  }
}

/**
 * Where parsed input comes from. The kind is "evidence" (host input) unless the structure is, say,
 * a KBS response (`decrypt`); the hint tells the operator what to check.
 */
export interface ParseSite {
  structure: string;
  kind?: ErrorKind;
  hint?: string;
}

/** Malformed bytes from a host-controlled source: names the structure, field and offset. */
export class ParseError extends CvmError {
  readonly structure: string;
  readonly field: string;
  readonly offset: number;
  constructor(structure: string | ParseSite, field: string, offset: number, problem: string) {
    const site = typeof structure === "string" ? { structure } : structure;
    super(
      site.kind ?? "evidence",
      `${site.structure}: field '${field}' at offset ${offset} (0x${offset.toString(16)}): ${problem}`,
      site.hint !== undefined ? { hint: site.hint } : {},
    );
    this.name = "ParseError";
    this.structure = site.structure;
    this.field = field;
    this.offset = offset;
  }
}

export function errorMessage(e: unknown): string {
  if (e instanceof Error) return e.message;
  return String(e);
}
