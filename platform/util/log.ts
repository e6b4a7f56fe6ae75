// Logging to stderr. Never pass secret bytes or strings derived from them to a logger:
// the serial console of a CVM belongs to the host.
//
// Formats: "journal" prefixes each line with a syslog priority (<3> error ... <7> debug), which
// systemd-journald strips and records as PRIORITY= (it names the program itself); "kmsg" adds
// the program name as well, for /dev/kmsg, where nothing else would; "text" is plain, for a
// person or a file; "json" is one object per line for tooling.
import * as fs from "node:fs";

export type Level = "error" | "warning" | "notice" | "info" | "debug";
export type LogFormat = "journal" | "kmsg" | "text" | "json";
export const LOG_FORMATS: readonly LogFormat[] = ["journal", "kmsg", "text", "json"];

const PRIORITY: Record<Level, number> = { error: 3, warning: 4, notice: 5, info: 6, debug: 7 };

export type LogFields = Record<string, string | number | boolean | null | undefined>;

export interface Logger {
  error(msg: string, fields?: LogFields): void;
  warning(msg: string, fields?: LogFields): void;
  notice(msg: string, fields?: LogFields): void;
  info(msg: string, fields?: LogFields): void;
  debug(msg: string, fields?: LogFields): void;
}

export interface LoggerOptions {
  format: LogFormat;
  verbose: boolean;
  write?: (line: string) => void;
}

export function createLogger(opts: LoggerOptions): Logger {
  const write = opts.write ?? ((line: string) => process.stderr.write(line));
  const emit = (level: Level, msg: string, fields?: LogFields) => {
    if (level === "debug" && !opts.verbose) return;
    const clean = msg.replace(/[\r\n]+/g, " ");
    const kv = fields
      ? Object.entries(fields)
          .filter(([, v]) => v !== undefined)
          .map(([k, v]) => `${k}=${typeof v === "string" && /\s/.test(v) ? JSON.stringify(v) : String(v)}`)
          .join(" ")
      : "";
    switch (opts.format) {
      case "json":
        write(JSON.stringify({ level, msg: clean, ...fields }) + "\n");
        return;
      case "journal":
        write(`<${PRIORITY[level]}>${clean}${kv ? " " + kv : ""}\n`);
        return;
      case "kmsg":
        write(`<${PRIORITY[level]}>cvm-unlock: ${clean}${kv ? " " + kv : ""}\n`);
        return;
      case "text": {
        const tag = level === "info" || level === "notice" ? "" : `${level}: `;
        write(`${tag}${clean}${kv ? " (" + kv + ")" : ""}\n`);
        return;
      }
    }
  };
  return {
    error: (m, f) => emit("error", m, f),
    warning: (m, f) => emit("warning", m, f),
    notice: (m, f) => emit("notice", m, f),
    info: (m, f) => emit("info", m, f),
    debug: (m, f) => emit("debug", m, f),
  };
}

/** A logger that drops everything (library callers, tests). */
export const silentLogger: Logger = createLogger({ format: "text", verbose: false, write: () => {} });

/** What fd 2 is, as far as choosing a log format goes. */
export interface StderrTarget {
  /** st_dev:st_ino of fd 2, in systemd's JOURNAL_STREAM notation ("dev:ino", decimal). */
  devIno?: string;
  /** fd 2 is the kernel log device /dev/kmsg (character device 1:11). */
  isKmsg?: boolean;
  isTTY?: boolean;
}

const KMSG_RDEV = (1n << 8n) | 11n; // makedev(1, 11), Linux's old-style encoding for small numbers

export function stderrTarget(): StderrTarget {
  try {
    const st = fs.fstatSync(2, { bigint: true });
    return {
      devIno: `${st.dev}:${st.ino}`,
      isKmsg: st.isCharacterDevice() && st.rdev === KMSG_RDEV,
      isTTY: process.stderr.isTTY,
    };
  } catch {
    return { isTTY: process.stderr.isTTY };
  }
}

/**
 * systemd sets JOURNAL_STREAM to the dev:ino of the journal stream it connected, and a child
 * inherits it even when its stderr goes elsewhere: only a match means fd 2 is the journal.
 */
export function defaultLogFormat(
  target: StderrTarget = stderrTarget(),
  journalStream: string | undefined = process.env.JOURNAL_STREAM,
): LogFormat {
  if (journalStream !== undefined && target.devIno !== undefined && journalStream === target.devIno) return "journal";
  if (target.isKmsg) return "kmsg";
  return "text";
}
