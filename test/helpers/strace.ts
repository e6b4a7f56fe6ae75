// Reading `strace -f -yy -xx` output: decode the hex-escaped strings and fd descriptions, so tests
// can search every syscall for a secret and say where it went.
import * as fs from "node:fs";

export interface Hit {
  pid: string;
  syscall: string;
  fd: string;
  line: string;
}

/** strace -xx prints every string as \xNN; decode them to bytes. */
export function decodeStrings(line: string): Buffer[] {
  return [...line.matchAll(/"((?:\\x[0-9a-f]{2})*)"/g)].map((m) => Buffer.from(m[1]!.replace(/\\x/g, ""), "hex"));
}
/** The fd's description strace -yy prints in <...> (hex-escaped or literal, depending on its content). */
export function decodeFd(line: string): string {
  const m = /^\d+\s+\w+\(\d+<(.*?)>[,)]/.exec(line);
  if (!m) return "";
  return /^(\\x[0-9a-f]{2})+$/.test(m[1]!) ? Buffer.from(m[1]!.replace(/\\x/g, ""), "hex").toString("latin1") : m[1]!;
}

export const STRACE_ARGS = [
  "-f",
  "-qq",
  "-yy",
  "-v",
  "-xx",
  "-s",
  "1048576",
  "-e",
  "trace=execve,write,writev,pwrite64,pwritev,sendto,sendmsg,read,readv,recvfrom,recvmsg",
];

/** Every syscall line of `trace` whose strings contain one of `forms`, and each pid's executable. */
export function secretSightings(trace: string, forms: Buffer[]): { hits: Hit[]; execs: Map<string, string> } {
  const hits: Hit[] = [];
  const execs = new Map<string, string>();
  for (const line of fs.readFileSync(trace, "utf8").split("\n")) {
    const m = /^(\d+)\s+(\w+)\(/.exec(line);
    if (!m) continue;
    const strings = decodeStrings(line);
    if (m[2] === "execve") execs.set(m[1]!, strings[0]?.toString("latin1") ?? "");
    if (strings.some((s) => forms.some((f) => s.includes(f))))
      hits.push({ pid: m[1]!, syscall: m[2]!, fd: decodeFd(line), line: line.slice(0, 200) });
  }
  return { hits, execs };
}
