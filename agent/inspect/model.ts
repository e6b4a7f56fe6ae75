// What `inspect` produces for any input: sections of labelled values for people, and a JSON value
// for tools. Decoders build this; render.ts prints it.
export type InspectType =
  | "snp-report"
  | "tdx-quote"
  | "tdx-report"
  | "eventlog"
  | "ccel"
  | "ccel-table"
  | "snp-certs"
  | "hcl-report"
  | "evidence-json";

export const INSPECT_TYPES: readonly InspectType[] = [
  "snp-report",
  "tdx-quote",
  "tdx-report",
  "eventlog",
  "ccel",
  "ccel-table",
  "snp-certs",
  "hcl-report",
  "evidence-json",
];

export type Row = [label: string, value: string];

export interface Section {
  title: string;
  rows: Row[];
  /** Free-form lines (event listings) printed after the rows. */
  lines?: string[];
}

export interface Inspection {
  type: InspectType;
  /** One line: what this is. */
  summary: string;
  sections: Section[];
  json: unknown;
  /** Problems a person should notice (signature does not verify, replay mismatch...). */
  warnings: string[];
}

/** The labels of the flags that are set, in the labels' order (decoded bit fields for people). */
export function setFlagLabels<T extends object>(flags: T, labels: Partial<Record<keyof T, string>>): string[] {
  return (Object.keys(labels) as (keyof T)[]).filter((k) => flags[k] === true).map((k) => labels[k]!);
}
