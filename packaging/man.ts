// Markdown -> man(7) roff, for the subset docs/CLI.md and docs/CONFIG.md use: headings, paragraphs,
// fenced code, pipe tables (rendered with tbl), bullet lists, `code`, **bold**, [links](...).
// The manual pages are generated from those documents at package build time so they cannot drift.

export interface ManPage {
  name: string; // e.g. "cvm-unlock"
  section: number;
  /** One line for the NAME section (whatis). */
  summary: string;
  version: string;
  /** Date in the .TH line (YYYY-MM-DD), for reproducible output. */
  date: string;
  seeAlso: string[];
}

/** Escapes text for roff: backslashes, hyphens (so options copy as ASCII '-'), leading control chars. */
function escapeText(s: string): string {
  return s.replace(/\\/g, "\\e").replace(/-/g, "\\-");
}

/** Inline markdown -> roff font changes. */
export function inline(md: string): string {
  let out = "";
  const re = /`([^`]+)`|\*\*([^*]+)\*\*|\[([^\]]+)\]\(([^)]+)\)/g;
  let last = 0;
  for (let m = re.exec(md); m !== null; m = re.exec(md)) {
    out += escapeText(md.slice(last, m.index));
    if (m[1] !== undefined) out += `\\fB${escapeText(m[1])}\\fR`;
    else if (m[2] !== undefined) out += `\\fB${inline(m[2])}\\fR`;
    else out += inline(m[3]!); // link: its text; the target is another document or a URL
    last = m.index + m[0].length;
  }
  return out + escapeText(md.slice(last));
}

/** A roff text line must not start with a control character ('.' or '\''). */
function textLine(s: string): string {
  return /^[.']/.test(s) ? `\\&${s}` : s;
}

function tableCells(line: string): string[] {
  return line
    .trim()
    .replace(/^\|/, "")
    .replace(/\|$/, "")
    .split(/(?<!\\)\|/)
    .map((c) => c.trim().replace(/\\\|/g, "|"));
}

// Columns wider than this wrap (tbl text blocks sharing the line width); narrower ones keep their width.
const NARROW_COLUMN = 24;

function table(rows: string[]): string[] {
  const [head, , ...body] = rows.map(tableCells);
  const cols = head!.length;
  const cellAt = (r: string[], i: number) => r[i] ?? "";
  const wraps = Array.from(
    { length: cols },
    (_, i) => i === cols - 1 || Math.max(...[head!, ...body].map((r) => cellAt(r, i).length)) > NARROW_COLUMN,
  );
  // tab(@): '@' is refused in cells
  const cell = (c: string, i: number) => {
    if (c.includes("@")) throw new Error(`man: '@' in a table cell is the tbl column separator: ${c}`);
    const text = textLine(inline(c));
    return wraps[i] ? `T{\n${text}\nT}` : text;
  };
  const format = (f: string) => wraps.map((w) => (w ? `${f}x` : f)).join(" ");
  return [
    ".TS",
    "allbox tab(@);",
    format("lb"),
    format("l") + ".",
    head!.map(cell).join("@"),
    ...body.map((r) => Array.from({ length: cols }, (_, i) => cell(cellAt(r, i), i)).join("@")),
    ".TE",
    ".sp",
  ];
}

export function markdownToMan(md: string, page: ManPage): string {
  const out: string[] = [
    "'\\\" t", // tells man(1) to run tbl
    `.TH ${page.name.toUpperCase()} ${page.section} ${page.date} "cvm-unlock ${page.version}" "cvm-unlock"`,
    ".nh", // no hyphenation: option and key names must stay whole to be copied or searched
    ".ad l",
    ".SH NAME",
    `${escapeText(page.name)} \\- ${escapeText(page.summary)}`,
    ".SH DESCRIPTION", // what precedes the document's first ## section
  ];
  const lines = md.split("\n");
  let i = 0;
  let para: string[] = [];
  const flush = () => {
    if (para.length) out.push(".PP", textLine(inline(para.join(" "))));
    para = [];
  };
  while (i < lines.length) {
    const line = lines[i]!;
    if (line.startsWith("```")) {
      flush();
      out.push(".PP", ".nf", ".RS 2");
      for (i++; i < lines.length && !lines[i]!.startsWith("```"); i++) out.push(textLine(escapeText(lines[i]!)));
      out.push(".RE", ".fi");
      i++;
      continue;
    }
    const h = /^(#{1,3}) (.*)$/.exec(line);
    if (h) {
      flush();
      // the document title becomes the NAME line above; ## sections, ### subsections
      if (h[1] === "##") out.push(`.SH ${inline(h[2]!.toUpperCase())}`);
      else if (h[1] === "###") out.push(`.SS ${inline(h[2]!)}`);
      i++;
      continue;
    }
    if (line.startsWith("|")) {
      flush();
      const rows: string[] = [];
      for (; i < lines.length && lines[i]!.startsWith("|"); i++) rows.push(lines[i]!);
      out.push(...table(rows));
      continue;
    }
    if (/^\* /.test(line)) {
      flush();
      // an item runs on over the indented lines below it
      const item = [line.slice(2)];
      for (i++; i < lines.length && /^ {2,}\S/.test(lines[i]!); i++) item.push(lines[i]!.trim());
      out.push(".IP \\(bu 2", textLine(inline(item.join(" "))));
      continue;
    }
    if (line.trim() === "") flush();
    else para.push(line.trim());
    i++;
  }
  flush();
  if (page.seeAlso.length) out.push(".SH SEE ALSO", page.seeAlso.map((s) => `\\fB${escapeText(s)}\\fR`).join(", "));
  return out.join("\n") + "\n";
}
