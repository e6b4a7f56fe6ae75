// Read a live dm-crypt mapping back with dmsetup, compare it with what was verified
// (live-table.ts) and, on any difference, take the mapping down and fail. Used right after our
// own `cryptsetup open` (mode A, open-verified.ts) and after each systemd-cryptsetup@ unit
// (mode B, `verify-mapping`).
import * as fs from "node:fs";
import * as path from "node:path";
import type { Deadline } from "../../platform/util/deadline.ts";
import { CvmError, errorMessage } from "../../platform/util/errors.ts";
import { readSmall } from "../../platform/luks/block-devices.ts";
import { findCryptsetup, runCryptsetup } from "./cryptsetup.ts";
import { liveTableDifferences, parseDmCryptTable, type ExpectedMapping } from "./live-table.ts";

export interface LiveMappingCheck {
  cryptsetup: string;
  /** unlock.dmsetup (name or path). */
  dmsetup: string;
  name: string;
  device: string;
  expected: ExpectedMapping;
  allowedOptions?: readonly string[];
  /** Platform root (sysfs). */
  root: string;
  deadline: Deadline;
}

const MAX_HOLDER_DEPTH = 4;

/** dm names stacked on top of `name` (LVM logical volumes on a PV in it), deepest first. */
function holders(root: string, name: string, depth = 0): string[] {
  if (depth >= MAX_HOLDER_DEPTH) return [];
  let minor: string | undefined;
  try {
    const dev = fs.readlinkSync(path.join(root, "dev/mapper", name));
    minor = path.basename(dev);
  } catch {
    return [];
  }
  let entries: string[] = [];
  try {
    entries = fs.readdirSync(path.join(root, "sys/class/block", minor, "holders"));
  } catch {
    return [];
  }
  return entries.flatMap((h) => {
    const n = readSmall(path.join(root, "sys/class/block", h, "dm/name"))?.trim();
    return n ? [...holders(root, n, depth + 1), n] : [];
  });
}

/** Take the mapping down: first what sits on it (LVM activated it already?), then the crypt device. */
async function takeDown(c: Omit<LiveMappingCheck, "expected">): Promise<string> {
  const notes: string[] = [];
  const dmsetup = (() => {
    try {
      return findCryptsetup(c.dmsetup, "dmsetup");
    } catch {
      return undefined;
    }
  })();
  for (const h of holders(c.root, c.name)) {
    if (!dmsetup) break;
    const r = await runCryptsetup(dmsetup, ["remove", h], undefined, c.deadline, "removing a holder of").catch(
      () => undefined,
    );
    notes.push(r?.code === 0 ? `removed ${h} on top of it` : `could not remove ${h} on top of it`);
  }
  const closed = await runCryptsetup(c.cryptsetup, ["close", c.name], undefined, c.deadline, "closing").then(
    (r) => (r.code === 0 ? "closed" : `cryptsetup close failed (exit ${r.code})`),
    (e: unknown) => `cryptsetup close failed (${errorMessage(e)})`,
  );
  return [...notes, closed].join(", ");
}

/** Compare the live table with the expected mapping; on any difference close the mapping and throw. */
export async function checkLiveMapping(c: LiveMappingCheck): Promise<void> {
  let problem: string;
  try {
    const dmsetup = findCryptsetup(c.dmsetup, "dmsetup");
    const r = await runCryptsetup(dmsetup, ["table", c.name], undefined, c.deadline, "reading the dm table of");
    if (r.code !== 0) problem = `dmsetup table ${c.name} failed (exit ${r.code}: ${r.stderr.slice(0, 200)})`;
    else {
      const table = parseDmCryptTable(r.stdout);
      const diffs =
        typeof table === "string" ? [table] : liveTableDifferences(table, c.expected, c.root, c.allowedOptions);
      if (diffs.length === 0) return;
      problem = `the live dm-crypt table of ${c.name} differs from the verified header: ${diffs.join("; ")}`;
    }
  } catch (e) {
    problem = `cannot read back the dm-crypt table of ${c.name}: ${errorMessage(e)}`;
  }
  return refuseMapping(c, problem);
}

/** Take the mapping (and what sits on it) down and throw a `volume` error naming `problem`. */
export async function refuseMapping(c: Omit<LiveMappingCheck, "expected">, problem: string): Promise<never> {
  const outcome = await takeDown(c);
  throw new CvmError("volume", `${c.device}: ${problem}; mapping ${c.name} ${outcome}: refusing`, {
    hint: "the device changed between the header check and the open (hostile block backend?), or dmsetup is missing from the initramfs",
  });
}
