// `inspect` for TCG event logs, CCEL log areas and the CCEL ACPI table.
import { hex } from "../../platform/util/bytes.ts";
import { algorithmName } from "../../platform/eventlog/algorithms.ts";
import { describeEvent } from "../../platform/eventlog/details.ts";
import { parseCcelLog, parseCcelTable } from "../../platform/eventlog/ccel.ts";
import { parseEventLog, type EventLog } from "../../platform/eventlog/parse.ts";
import { replay, startupLocality } from "../../platform/eventlog/replay.ts";
import type { Inspection, Row, Section } from "./model.ts";

/** Events printed in text mode; JSON always has all of them. */
const MAX_LISTED = 2000;

function eventLines(log: EventLog, kind: "pcr" | "rtmr"): string[] {
  const reg = kind === "rtmr" ? "MR" : "PCR";
  return log.events
    .slice(0, MAX_LISTED)
    .map((e) => {
      const d = [...e.digests].map(([alg, v]) => `${algorithmName(alg)}:${hex(v).slice(0, 16)}…`).join(" ");
      const text = describeEvent(e);
      return `#${String(e.seq).padStart(3)} ${reg}${String(e.index).padEnd(2)} ${e.typeName.padEnd(32)} ${d} (${e.data.length} B)${text ? ` ${text.slice(0, 100)}` : ""}`;
    })
    .concat(log.events.length > MAX_LISTED ? [`… ${log.events.length - MAX_LISTED} more (use --json)`] : []);
}

function registerRows(
  log: EventLog,
  kind: "pcr" | "rtmr",
): { rows: Row[]; json: Record<string, Record<string, string>> } {
  const values = replay(log, { kind });
  const rows: Row[] = [];
  const json: Record<string, Record<string, string>> = {};
  for (const idx of [...values.keys()].sort((a, b) => a - b)) {
    const name = kind === "rtmr" ? `RTMR${idx}` : `PCR${idx}`;
    json[name] = {};
    for (const [alg, v] of values.get(idx)!) {
      rows.push([`${name} ${algorithmName(alg)}`, hex(v)]);
      json[name]![algorithmName(alg)] = hex(v);
    }
  }
  return { rows, json };
}

function describe(log: EventLog, bytes: Uint8Array, kind: "pcr" | "rtmr", type: "eventlog" | "ccel"): Inspection {
  const warnings: string[] = [];
  const header: Row[] = [
    ["format", log.format === "crypto-agile" ? "TCG crypto-agile (Spec ID Event03)" : "legacy SHA-1 (TPM 1.2 style)"],
    ["banks", log.algorithms.map((a) => `${a.name} (${a.size} B)`).join(", ")],
    ["events", String(log.events.length)],
    [
      "log length",
      `${log.length} of ${bytes.length} bytes${log.end === "terminator" ? " (then 0xFF/0x00 padding)" : ""}`,
    ],
  ];
  if (log.specId)
    header.push([
      "spec version",
      `${log.specId.specVersion} errata ${log.specId.specErrata}, uintnSize ${log.specId.uintnSize}`,
    ]);
  const loc = startupLocality(log);
  if (loc !== undefined) header.push(["startup locality", String(loc)]);
  let regs: { rows: Row[]; json: Record<string, Record<string, string>> } = { rows: [], json: {} };
  try {
    regs = registerRows(log, kind);
  } catch (e) {
    warnings.push(`cannot replay: ${(e as Error).message}`);
  }
  const sections: Section[] = [
    { title: type === "ccel" ? "CCEL event log" : "TCG event log", rows: header },
    { title: kind === "rtmr" ? "replayed RTMRs (MR index 1..4 -> RTMR0..3)" : "replayed PCRs", rows: regs.rows },
    { title: "events", rows: [], lines: eventLines(log, kind) },
  ];
  return {
    type,
    summary: `${type === "ccel" ? "CCEL" : "TCG event log"}: ${log.events.length} events, banks ${log.algorithms.map((a) => a.name).join("+")}`,
    sections,
    warnings,
    json: {
      format: log.format,
      algorithms: log.algorithms,
      length: log.length,
      end: log.end,
      spec_id: log.specId ? { ...log.specId, vendorInfo: hex(log.specId.vendorInfo) } : null,
      replay: regs.json,
      events: log.events.map((e) => ({
        seq: e.seq,
        offset: e.offset,
        index: e.index,
        type: e.type,
        type_name: e.typeName,
        digests: Object.fromEntries([...e.digests].map(([alg, v]) => [algorithmName(alg), hex(v)])),
        data: hex(e.data),
        details: describeEvent(e) ?? null,
      })),
    },
  };
}

export function inspectEventLog(bytes: Uint8Array): Inspection {
  return describe(parseEventLog(bytes), bytes, "pcr", "eventlog");
}

export function inspectCcel(bytes: Uint8Array): Inspection {
  return describe(parseCcelLog(bytes), bytes, "rtmr", "ccel");
}

export function inspectCcelTable(bytes: Uint8Array): Inspection {
  const t = parseCcelTable(bytes);
  const rows: Row[] = [
    ["revision", String(t.revision)],
    ["checksum", t.checksumOk ? "ok" : "BAD"],
    ["OEM", `${t.oemId} / ${t.oemTableId} rev ${t.oemRevision}`],
    ["creator", `${t.creatorId} rev ${t.creatorRevision}`],
    ["CC type", `${t.ccType} (${t.ccTypeName}), subtype ${t.ccSubtype}`],
    ["log area", `${t.laml} bytes at 0x${t.lasa.toString(16)}`],
  ];
  return {
    type: "ccel-table",
    summary: `ACPI CCEL table: ${t.ccTypeName} event log of ${t.laml} bytes`,
    sections: [{ title: "CCEL ACPI table", rows }],
    warnings: t.checksumOk ? [] : ["ACPI checksum does not add up to zero"],
    json: { table: t },
  };
}
