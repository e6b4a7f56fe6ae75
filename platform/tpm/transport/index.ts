// Transport selection from the TPM spec string (PlatformEnv.tpm.spec):
//   /dev/tpmrm0 (or any absolute device path)   swtpm:HOST:PORT   unix:/path/to/socket
import * as fs from "node:fs";
import * as path from "node:path";
import { CvmError } from "../../util/errors.ts";
import { openDevice } from "./device.ts";
import { openSocket } from "./socket.ts";
import type { TpmTransport } from "./types.ts";

export type TpmSpec =
  { kind: "device"; path: string } | { kind: "tcp"; host: string; port: number } | { kind: "unix"; path: string };

export function parseTpmSpec(spec: string): TpmSpec {
  if (spec.startsWith("/")) return { kind: "device", path: spec };
  if (spec.startsWith("unix:") && spec.length > 5) return { kind: "unix", path: spec.slice(5) };
  const m = /^swtpm:(?:\[([0-9a-fA-F:.]+)\]|([A-Za-z0-9.-]+)):(\d{1,5})$/.exec(spec);
  if (m) {
    const port = Number(m[3]);
    if (port >= 1 && port <= 65535) return { kind: "tcp", host: (m[1] ?? m[2])!, port };
  }
  throw new CvmError("config", `unrecognised TPM spec '${spec}'`, {
    hint: "use /dev/tpmrm0, swtpm:HOST:PORT or unix:/path",
  });
}

/**
 * Is a TPM there to talk to? False only when a device spec names a node that does not exist
 * (no TPM, or no driver); a socket spec is an explicit tester choice and counts as there.
 */
export function tpmPresent(spec: string, root: string): boolean {
  const s = parseTpmSpec(spec);
  if (s.kind !== "device") return true;
  return fs.existsSync(root !== "/" ? path.join(root, s.path) : s.path);
}

export interface OpenOptions {
  /** Platform root for device paths (tests use a stand-in tree); "/" in production. */
  root?: string;
  connectTimeoutMs?: number;
}

export async function openTransport(spec: string, opts: OpenOptions = {}): Promise<TpmTransport> {
  const s = parseTpmSpec(spec);
  const timeout = opts.connectTimeoutMs ?? 5_000;
  switch (s.kind) {
    case "device":
      return openDevice(opts.root && opts.root !== "/" ? path.join(opts.root, s.path) : s.path);
    case "tcp":
      return openSocket({ host: s.host, port: s.port }, timeout);
    case "unix":
      return openSocket({ path: s.path }, timeout);
  }
}
