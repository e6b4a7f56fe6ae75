// Logging to stderr. Never pass secret bytes or strings derived from them to a logger:
// the serial console of a CVM belongs to the host.
//
// Formats: "kmsg" prefixes each line with a syslog priority (<3> error ... <7> debug) so that
// systemd-journald (StandardError=journal+console) and the kernel log classify it; "text" is
// for a person at a terminal; "json" is one object per line for tooling.

export type Level = "error" | "warning" | "notice" | "info" | "debug";
export type LogFormat = "kmsg" | "text" | "json";

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

export function defaultLogFormat(stream: { isTTY?: boolean } = process.stderr): LogFormat {
  return stream.isTTY ? "text" : "kmsg";
}
