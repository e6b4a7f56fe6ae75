// One configfs-tsm report request (docs/spec/configfs-tsm.md §2, the go-configfs-tsm client protocol):
//   mkdir a private entry → read provider + generation → write inblob (+privlevel) → read auxblob
//   and outblob, re-checking generation after each read → re-read provider → rmdir the entry.
// Requests are serialised in-process; a generation mismatch (another writer) is retried a bounded
// number of times with a fresh entry. The entry is removed on every path.
//
// Stand-in roots (tests): on a real kernel, mkdir makes the attribute files appear and a write
// bumps `generation` synchronously; a plain directory tree cannot do either. A helper process
// (test/helpers/fake-tsm.ts) plays the kernel: it populates new entries and, when inblob/privlevel
// change, writes outblob/auxblob first and `generation` last. So for a stand-in root only, this
// module (a) waits, bounded, for `provider`/`generation` to appear, (b) waits, bounded, until
// `generation` has caught up with our writes, and (c) unlinks the plain files before rmdir.
// The kernel path does none of these; `StandInQuirks` keeps the differences in one place.
import { onExitCleanup } from "../util/exit-cleanup.ts";
import * as fs from "node:fs";
import * as path from "node:path";
import type { PlatformEnv } from "../types.ts";
import { CvmError, errorMessage } from "../util/errors.ts";
import {
  ATTR,
  DEFAULT_TSM_LIMITS,
  INBLOB_SIZE,
  newEntryName,
  parseGeneration,
  parseProvider,
  type TsmLimits,
} from "./attributes.ts";
import { readAttribute, readOptionalAttribute, tsmIoError, writeAttribute } from "./io.ts";
import { pathExists } from "../util/files.ts";
import { ensureConfigfs, isStandInRoot } from "./mount.ts";

export interface TsmRequest {
  /** Exactly 64 bytes (REPORT_DATA for SNP, REPORTDATA for TDX). */
  inblob: Uint8Array;
  /** SEV only: VMPL to put in the report (written to `privlevel`). */
  privlevel?: number;
  /** Read `auxblob` too (SEV: the certificate table). */
  wantAuxblob?: boolean;
  /** Refuse any other provider ("sev_guest", "tdx_guest"). */
  expectProvider?: string;
  limits?: Partial<TsmLimits>;
}

export interface TsmReport {
  provider: string;
  outblob: Uint8Array;
  /** undefined when not requested, not offered by the provider, or empty. */
  auxblob: Uint8Array | undefined;
  /** The kernel's write generation the blobs belong to. */
  generation: number;
  /** Entries used (1 unless another writer interfered). */
  attempts: number;
  ms: number;
}

/** Attempts with a fresh entry when another writer changes the generation under us. */
export const MAX_GENERATION_ATTEMPTS = 3;
/** Stand-in only: how long the fake kernel may take to populate an entry or answer a write. */
export const STAND_IN_WAIT_MS = 5000;
const STAND_IN_POLL_MS = 5;

class GenerationRace extends Error {}

// ---- in-process serialisation -------------------------------------------------------------------
let queue: Promise<unknown> = Promise.resolve();
function serialised<T>(fn: () => Promise<T>): Promise<T> {
  const run = queue.then(fn, fn);
  queue = run.catch(() => undefined);
  return run;
}

// ---- differences between the kernel and a stand-in tree -------------------------------------------
interface EntryQuirks {
  awaitPopulated(entry: string): Promise<void>;
  awaitGeneration(entry: string, expected: number, limits: TsmLimits): Promise<void>;
  remove(entry: string): void;
}

const kernelQuirks: EntryQuirks = {
  async awaitPopulated() {},
  async awaitGeneration() {},
  remove(entry) {
    fs.rmdirSync(entry);
  },
};

function standInQuirks(env: PlatformEnv): EntryQuirks {
  const waitFor = async (cond: () => boolean, what: string) => {
    const until = Date.now() + env.deadline.cap(STAND_IN_WAIT_MS);
    while (!cond()) {
      if (Date.now() >= until)
        throw new CvmError(
          "platform",
          `stand-in configfs-tsm: ${what} did not happen within ${STAND_IN_WAIT_MS} ms (is the fake kernel running?)`,
        );
      // a plain timer, not deadline.sleep: polling must not pile up abort listeners
      await new Promise((r) => setTimeout(r, Math.min(STAND_IN_POLL_MS, env.deadline.remainingMs())));
      env.deadline.check(`waiting for the stand-in configfs-tsm (${what})`);
    }
  };
  return {
    awaitPopulated: (entry) =>
      waitFor(
        () => pathExists(path.join(entry, ATTR.provider)) && pathExists(path.join(entry, ATTR.generation)),
        "entry population",
      ),
    awaitGeneration: (entry, expected, limits) =>
      waitFor(
        () => parseGeneration(readAttribute(path.join(entry, ATTR.generation), limits.text, "generation")) >= expected,
        `generation ${expected}`,
      ),
    remove(entry) {
      // A plain directory cannot be rmdir'ed while it holds files; configfs attributes vanish with it.
      for (const name of fs.readdirSync(entry).slice(0, 64)) fs.rmSync(path.join(entry, name), { force: true });
      fs.rmdirSync(entry);
    },
  };
}

// ---- the protocol ---------------------------------------------------------------------------------
function readGeneration(entry: string, limits: TsmLimits): number {
  return parseGeneration(readAttribute(path.join(entry, ATTR.generation), limits.text, "configfs-tsm generation"));
}

function readProvider(entry: string, limits: TsmLimits): string {
  return parseProvider(readAttribute(path.join(entry, ATTR.provider), limits.text, "configfs-tsm provider"));
}

function makeEntry(reportDir: string): string {
  for (let i = 0; i < 3; i++) {
    const entry = path.join(reportDir, newEntryName());
    try {
      fs.mkdirSync(entry);
      return entry;
    } catch (e) {
      if ((e as { code?: string }).code === "EEXIST") continue;
      throw tsmIoError(e, `creating a configfs-tsm report entry under ${reportDir}`);
    }
  }
  throw new CvmError("platform", `could not create a uniquely named entry under ${reportDir}`);
}

/** Run `fn` on a fresh private entry and remove the entry afterwards, whatever happens. */
async function withEntry<T>(env: PlatformEnv, quirks: EntryQuirks, fn: (entry: string) => Promise<T>): Promise<T> {
  const entry = makeEntry(env.paths.tsmReport);
  const unregister = onExitCleanup(() => quirks.remove(entry));
  try {
    return await fn(entry);
  } finally {
    unregister();
    try {
      quirks.remove(entry);
    } catch (e) {
      env.log.warning(`could not remove configfs-tsm entry ${entry}: ${errorMessage(e)}`);
    }
  }
}

async function oneAttempt(
  entry: string,
  req: TsmRequest,
  limits: TsmLimits,
  quirks: EntryQuirks,
): Promise<Omit<TsmReport, "attempts" | "ms">> {
  await quirks.awaitPopulated(entry);
  const provider = readProvider(entry, limits);
  if (req.expectProvider !== undefined && provider !== req.expectProvider)
    throw new CvmError("platform", `configfs-tsm provider is '${provider}', expected '${req.expectProvider}'`);
  let expected = readGeneration(entry, limits);

  writeAttribute(path.join(entry, ATTR.inblob), req.inblob, "configfs-tsm inblob");
  expected += 1;
  if (req.privlevel !== undefined) {
    if (!pathExists(path.join(entry, ATTR.privlevel)))
      throw new CvmError(
        "platform",
        `configfs-tsm provider '${provider}' has no privlevel attribute (it cannot set a VMPL)`,
      );
    writeAttribute(
      path.join(entry, ATTR.privlevel),
      Buffer.from(`${req.privlevel}\n`, "latin1"),
      "configfs-tsm privlevel",
    );
    expected += 1;
  }
  await quirks.awaitGeneration(entry, expected, limits);

  const checkGeneration = (after: string) => {
    const now = readGeneration(entry, limits);
    if (now !== expected) throw new GenerationRace(`generation is ${now} after ${after}, expected ${expected}`);
  };
  checkGeneration("writing the request");
  let auxblob: Uint8Array | undefined;
  if (req.wantAuxblob) {
    // Reading auxblob first makes the kernel generate the report; outblob then comes from the same one.
    auxblob = readOptionalAttribute(path.join(entry, ATTR.auxblob), limits.auxblob, "configfs-tsm auxblob");
    checkGeneration("reading auxblob");
  }
  const outblob = readAttribute(path.join(entry, ATTR.outblob), limits.outblob, "configfs-tsm outblob");
  checkGeneration("reading outblob");
  const providerAfter = readProvider(entry, limits);
  if (providerAfter !== provider)
    throw new CvmError(
      "evidence",
      `configfs-tsm provider changed from '${provider}' to '${providerAfter}' while reading the report; refusing it`,
    );
  if (outblob.length === 0) throw new CvmError("evidence", `configfs-tsm outblob is empty (provider '${provider}')`);
  return { provider, outblob, auxblob: auxblob && auxblob.length > 0 ? auxblob : undefined, generation: expected };
}

/** Get one report through configfs-tsm. Throws CvmError("platform") when configfs-tsm is unusable. */
export function requestTsmReport(env: PlatformEnv, req: TsmRequest): Promise<TsmReport> {
  if (req.inblob.length !== INBLOB_SIZE)
    throw new CvmError("internal", `configfs-tsm inblob must be ${INBLOB_SIZE} bytes, got ${req.inblob.length}`);
  if (req.privlevel !== undefined && !(Number.isInteger(req.privlevel) && req.privlevel >= 0 && req.privlevel <= 3))
    throw new CvmError("internal", `privlevel must be 0..3, got ${req.privlevel}`);
  const limits = { ...DEFAULT_TSM_LIMITS, ...req.limits };
  return serialised(async () => {
    const started = Date.now();
    if (!(await ensureConfigfs(env)))
      throw new CvmError("platform", `configfs-tsm is not available: ${env.paths.tsmReport} does not exist`, {
        hint: "needs Linux >= 6.7 with CONFIG_TSM_REPORTS and configfs mounted on /sys/kernel/config",
      });
    const quirks = isStandInRoot(env) ? standInQuirks(env) : kernelQuirks;
    let lastRace = "";
    for (let attempt = 1; attempt <= MAX_GENERATION_ATTEMPTS; attempt++) {
      env.deadline.check("requesting a configfs-tsm report");
      try {
        const r = await withEntry(env, quirks, (entry) => oneAttempt(entry, req, limits, quirks));
        return { ...r, attempts: attempt, ms: Date.now() - started };
      } catch (e) {
        if (!(e instanceof GenerationRace)) throw e;
        lastRace = e.message;
        env.log.warning("configfs-tsm report changed under us (another writer?); retrying with a fresh entry", {
          attempt,
          detail: e.message,
        });
      }
    }
    throw new CvmError(
      "evidence",
      `configfs-tsm report kept changing under us after ${MAX_GENERATION_ATTEMPTS} attempts (${lastRace}); another process is writing to our entry`,
    );
  });
}

export interface TsmAvailability {
  available: boolean;
  provider?: string;
  reason: string;
}

/** For probes: is configfs-tsm usable, and which provider is registered? Creates and removes one entry. */
export function probeTsmProvider(env: PlatformEnv): Promise<TsmAvailability> {
  return serialised(async () => {
    try {
      if (!(await ensureConfigfs(env))) return { available: false, reason: `${env.paths.tsmReport} does not exist` };
    } catch (e) {
      return { available: false, reason: errorMessage(e) };
    }
    const quirks = isStandInRoot(env) ? standInQuirks(env) : kernelQuirks;
    try {
      const provider = await withEntry(env, quirks, async (entry) => {
        await quirks.awaitPopulated(entry);
        return readProvider(entry, DEFAULT_TSM_LIMITS);
      });
      return { available: true, provider, reason: `configfs-tsm provider ${provider}` };
    } catch (e) {
      return { available: false, reason: errorMessage(e) };
    }
  });
}
