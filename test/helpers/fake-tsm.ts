// A stand-in kernel for configfs-tsm (docs/spec/configfs-tsm.md §1): a temp tree shaped like
// <root>/sys/kernel/config/tsm/report/ plus a watcher that plays the kernel for entries the agent
// creates with mkdir:
//   - populates a new entry with `provider`, `generation` ("0\n") and the provider's other
//     attributes (sev_guest: privlevel, privlevel_floor);
//   - when inblob (or privlevel) changes, counts one write per changed attribute like the kernel's
//     write_generation, produces outblob (and auxblob) through the caller's `outblobFor`, and
//     publishes `generation` LAST, so a reader that sees the new generation sees the new blobs.
// Files are replaced by rename, so a reader never sees half a blob. The agent's stand-in quirks
// (platform/tsm/report.ts) wait for exactly these two events and unlink the files before rmdir.
//
// Provider-neutral: SNP passes an SNP report generator, TDX a quote generator.
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";

export interface FakeTsmContext {
  entry: string;
  /** Last value written to privlevel (sev_guest), or undefined. */
  privlevel: number | undefined;
  /** The write generation this output belongs to. */
  generation: number;
}

export interface FakeTsmOptions {
  /** "sev_guest" or "tdx_guest" (or anything a test needs). */
  provider: string;
  /** The report for this inblob (called whenever inblob/privlevel changed). */
  outblobFor(inblob: Uint8Array, ctx: FakeTsmContext): Uint8Array | Promise<Uint8Array>;
  /** sev_guest: the certificate table. Omit for no auxblob file at all. */
  auxblobFor?(inblob: Uint8Array, ctx: FakeTsmContext): Uint8Array | Promise<Uint8Array>;
  /** Use this directory as the fake root (default: a fresh temp dir, removed by stop()). */
  root?: string;
  /** Polling interval backing up fs.watch (ms). */
  pollMs?: number;
  /** Hostility hook, run after each generation is published (tests tamper with the entry here). */
  afterGenerate?(ctx: FakeTsmContext & { files: FakeEntryFiles }): void | Promise<void>;
}

export interface FakeEntryFiles {
  /** Atomically replace an attribute file. */
  write(name: string, data: Uint8Array | string): void;
}

export interface FakeTsmRequest {
  entry: string;
  inblob: Uint8Array;
  privlevel: number | undefined;
  generation: number;
}

interface EntryState {
  dir: string;
  /** Per watched attribute: mtime + content last counted (mtime alone is jiffy-coarse). */
  seen: Map<string, string>;
  generation: number;
  busy: boolean;
  again: boolean;
}

const WATCHED = ["inblob", "privlevel"] as const;

/**
 * What identifies one write of a small attribute: its mtime and its bytes (hex; "" when empty).
 * undefined while a write is in flight: open(O_TRUNC) and write() each set mtime, so a stat taken
 * between them paired with bytes read after the write would make one write look like two.
 */
function attrKey(p: string): string | undefined {
  try {
    const before = fs.statSync(p, { bigint: true });
    if (before.size > 4096n) return `${before.mtimeNs}:big${before.size}`;
    const bytes = fs.readFileSync(p);
    const after = fs.statSync(p, { bigint: true });
    if (after.mtimeNs !== before.mtimeNs || after.size !== BigInt(bytes.length)) return undefined;
    return `${after.mtimeNs}:${bytes.toString("hex")}`;
  } catch {
    return undefined;
  }
}

export class FakeTsm {
  readonly root: string;
  readonly reportDir: string;
  readonly requests: FakeTsmRequest[] = [];
  readonly errors: unknown[] = [];
  private readonly tmpDir: string;
  private readonly entries = new Map<string, EntryState>();
  private watcher: fs.FSWatcher | undefined;
  private readonly entryWatchers = new Map<string, fs.FSWatcher>();
  private timer: ReturnType<typeof setInterval> | undefined;
  private readonly ownsRoot: boolean;
  private tmpCounter = 0;

  private constructor(private readonly opts: FakeTsmOptions) {
    this.ownsRoot = opts.root === undefined;
    this.root = opts.root ?? fs.mkdtempSync(path.join(os.tmpdir(), "fake-tsm-"));
    this.reportDir = path.join(this.root, "sys/kernel/config/tsm/report");
    this.tmpDir = path.join(this.root, ".fake-tsm-tmp");
  }

  static start(opts: FakeTsmOptions): FakeTsm {
    const f = new FakeTsm(opts);
    fs.mkdirSync(f.reportDir, { recursive: true });
    fs.mkdirSync(f.tmpDir, { recursive: true });
    try {
      f.watcher = fs.watch(f.reportDir, () => f.scan());
    } catch {
      /* polling covers it */
    }
    f.timer = setInterval(() => f.scan(), opts.pollMs ?? 10);
    return f;
  }

  /** Entries currently present (the agent must leave none behind). */
  liveEntries(): string[] {
    return fs.readdirSync(this.reportDir);
  }

  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.watcher?.close();
    for (const w of this.entryWatchers.values()) w.close();
    this.entryWatchers.clear();
    // let an in-flight generation finish before removing the tree
    for (let i = 0; i < 100 && [...this.entries.values()].some((e) => e.busy); i++)
      await new Promise((r) => setTimeout(r, 10));
    if (this.ownsRoot) fs.rmSync(this.root, { recursive: true, force: true });
  }

  private atomicWrite(dir: string, name: string, data: Uint8Array | string): void {
    const tmp = path.join(this.tmpDir, `${process.pid}-${this.tmpCounter++}`);
    fs.writeFileSync(tmp, data);
    fs.renameSync(tmp, path.join(dir, name));
  }

  private scan(): void {
    let names: string[];
    try {
      names = fs.readdirSync(this.reportDir);
    } catch {
      return;
    }
    for (const name of names) {
      const dir = path.join(this.reportDir, name);
      let st = this.entries.get(name);
      if (!st) {
        st = { dir, seen: new Map(), generation: 0, busy: false, again: false };
        this.entries.set(name, st);
        this.populate(st);
        try {
          const w = fs.watch(dir, () => this.check(st!));
          this.entryWatchers.set(name, w);
        } catch {
          /* polling covers it */
        }
      }
      this.check(st);
    }
    for (const [name, st] of this.entries) {
      if (!names.includes(name)) {
        this.entryWatchers.get(name)?.close();
        this.entryWatchers.delete(name);
        st.busy = false;
        this.entries.delete(name);
      }
    }
  }

  private populate(st: EntryState): void {
    try {
      // Attributes the agent only writes exist up front, like configfs shows them.
      if (this.opts.provider === "sev_guest") {
        this.atomicWrite(st.dir, "privlevel", "");
        this.atomicWrite(st.dir, "privlevel_floor", "0\n");
      }
      this.atomicWrite(st.dir, "inblob", "");
      for (const a of WATCHED) {
        const k = attrKey(path.join(st.dir, a));
        if (k !== undefined) st.seen.set(a, k);
      }
      this.atomicWrite(st.dir, "provider", `${this.opts.provider}\n`);
      this.atomicWrite(st.dir, "generation", "0\n");
    } catch (e) {
      if (fs.existsSync(st.dir)) this.errors.push(e);
    }
  }

  /** Count writes to inblob/privlevel since the last look; regenerate when there were any. */
  private check(st: EntryState): void {
    if (st.busy) {
      st.again = true;
      return;
    }
    let writes = 0;
    for (const a of WATCHED) {
      const k = attrKey(path.join(st.dir, a));
      // An open(O_TRUNC) before the write shows an empty file for a moment: not a write yet.
      if (k === undefined || k.endsWith(":")) continue;
      if (st.seen.get(a) !== k) {
        st.seen.set(a, k);
        writes++;
      }
    }
    if (writes === 0) return;
    st.generation += writes;
    st.busy = true;
    void this.generate(st).finally(() => {
      st.busy = false;
      if (st.again) {
        st.again = false;
        this.check(st);
      }
    });
  }

  private async generate(st: EntryState): Promise<void> {
    try {
      const inblob = new Uint8Array(fs.readFileSync(path.join(st.dir, "inblob")));
      let privlevel: number | undefined;
      if (fs.existsSync(path.join(st.dir, "privlevel"))) {
        const t = fs.readFileSync(path.join(st.dir, "privlevel"), "latin1").trim();
        if (t !== "") privlevel = Number(t);
      }
      const ctx: FakeTsmContext = { entry: path.basename(st.dir), privlevel, generation: st.generation };
      const out = await this.opts.outblobFor(inblob, ctx);
      const aux = this.opts.auxblobFor ? await this.opts.auxblobFor(inblob, ctx) : undefined;
      if (!fs.existsSync(st.dir)) return;
      this.atomicWrite(st.dir, "outblob", out);
      if (aux !== undefined) this.atomicWrite(st.dir, "auxblob", aux);
      this.atomicWrite(st.dir, "generation", `${st.generation}\n`);
      this.requests.push({ entry: ctx.entry, inblob, privlevel, generation: st.generation });
      if (this.opts.afterGenerate)
        await this.opts.afterGenerate({ ...ctx, files: { write: (n, d) => this.atomicWrite(st.dir, n, d) } });
    } catch (e) {
      if (fs.existsSync(st.dir)) this.errors.push(e);
    }
  }
}

/** Convenience for tests: PlatformEnv paths for a fake root. */
export function fakePaths(f: FakeTsm): { root: string; tsmReport: string } {
  return { root: f.root, tsmReport: f.reportDir };
}
