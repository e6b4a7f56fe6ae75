// Reading the serial console of a test boot: the marker lines the test root's init prints, the
// kernel-log lines it dumps with timestamps (CVM-E2E-KMSG), the boot timeline derived from them,
// and a scan for secret bytes in every encoding a careless log line could use.
import { createHash } from "node:crypto";

export const SWITCH_ROOT_MARKER =
  /CVM-E2E-MARKER: switch-root OK root=\[(\S+) (\S+)\] dm=\[([^\]]*)\] content=(\S+) uptime=([\d.]+)/;

export interface RootMarker {
  rootDevice: string;
  rootFs: string;
  dmNames: string[];
  content: string;
  uptimeS: number;
}

export function rootMarker(console: string): RootMarker | undefined {
  const m = SWITCH_ROOT_MARKER.exec(console);
  if (!m) return undefined;
  return {
    rootDevice: m[1]!,
    rootFs: m[2]!,
    dmNames: m[3]!.split(/\s+/).filter(Boolean),
    content: m[4]!,
    uptimeS: Number(m[5]),
  };
}

/** PCR 15 (sha256 bank) as printed by the test root, lower-case hex, or undefined. */
export function pcr15(console: string): string | undefined {
  const m = /CVM-E2E-PCR15: ([0-9A-Fa-f]{64})/.exec(console);
  return m ? m[1]!.toLowerCase() : undefined;
}

export interface KmsgLine {
  t: number;
  text: string;
}

/** "CVM-E2E-KMSG: [   12.345678] text" lines, in order. */
export function kmsgLines(console: string): KmsgLine[] {
  const out: KmsgLine[] = [];
  for (const m of console.matchAll(/CVM-E2E-KMSG: \[\s*([\d.]+)\] ([^\n]*)/g))
    out.push({ t: Number(m[1]), text: m[2]! });
  return out;
}

export interface BootTimeline {
  /** Kernel hands over to the initramfs' /init (guest uptime, s). */
  initramfsStart?: number;
  networkOnline?: number;
  unlockStart?: number;
  /** The unit that opened the root finished. */
  unlockDone?: number;
  switchRoot?: number;
  /** Marker printed by the real root's init. */
  rootInit?: number;
}

const first = (lines: KmsgLine[], re: RegExp) => lines.find((l) => re.test(l.text))?.t;

/** `unit` is the service that opens the root (cvm-unlock.service, or the floor's). */
export function bootTimeline(console: string, unit: string): BootTimeline {
  const lines = kmsgLines(console);
  const u = unit.replace(/[.]/g, "\\.");
  return {
    initramfsStart: first(lines, /Run \/init as init process/),
    networkOnline: first(lines, /Reached target network-online\.target/),
    unlockStart: first(lines, new RegExp(`Starting ${u}`)),
    unlockDone: first(lines, new RegExp(`Finished ${u}`)),
    switchRoot: first(lines, /Switching root/),
    rootInit: rootMarker(console)?.uptimeS,
  };
}

/** The agent's --timings table ("  phase   123.4 ms") as printed to the console. */
export function agentPhases(console: string): Record<string, number> {
  const phases: Record<string, number> = {};
  for (const m of console.matchAll(/^(?:.*?cvm-unlock\[\d+\]: )?\s{2}([a-z][\w.-]*)\s+([\d.]+) ms/gm))
    phases[m[1]!] ??= Number(m[2]);
  return phases;
}

/** Encodings of `secret` that must never appear in a log. */
export function secretForms(secret: Uint8Array): { name: string; bytes: Buffer }[] {
  const b = Buffer.from(secret);
  const forms = [
    { name: "raw", bytes: b },
    { name: "hex", bytes: Buffer.from(b.toString("hex")) },
    { name: "HEX", bytes: Buffer.from(b.toString("hex").toUpperCase()) },
    { name: "base64", bytes: Buffer.from(b.toString("base64").replace(/=+$/, "")) },
    { name: "base64url", bytes: Buffer.from(b.toString("base64url")) },
    // a partial leak (first half) is a leak too
    { name: "hex prefix", bytes: Buffer.from(b.subarray(0, Math.ceil(b.length / 2)).toString("hex")) },
    { name: "raw prefix", bytes: b.subarray(0, Math.ceil(b.length / 2)) },
    { name: "sha256 hex", bytes: Buffer.from(createHash("sha256").update(b).digest("hex")) },
  ];
  return forms.filter((f) => f.bytes.length >= 8);
}

/** Names of the forms of `secret` found in `haystack` (empty = clean). */
export function findSecret(haystack: Buffer, secret: Uint8Array): string[] {
  return secretForms(secret)
    .filter((f) => haystack.includes(f.bytes))
    .map((f) => f.name);
}
