// One VM boot: a private copy of the provisioned swtpm state, swtpm serving it on a unix socket
// (QEMU's tpm-crb device -> /dev/tpm0 + /dev/tpmrm0 in the guest), and qemu-system-x86_64 under
// TCG with the serial console captured to memory and to a log file. Every wait is bounded; both
// processes are killed on timeout, on stop() and when the test process exits.
import { spawn, type ChildProcess } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";

export interface BootOptions {
  /** Direct kernel boot; or `uefi` to boot the disk's ESP through OVMF (UKI). */
  kernel?: string;
  initrd?: string;
  cmdline?: string;
  uefi?: boolean;
  disk: string;
  swtpmTemplate: string;
  /** Directory for this boot's TPM state, swtpm socket and console log. */
  workDir: string;
  /** Hard limit for the whole boot; QEMU is killed after it. */
  timeoutMs: number;
  memoryMb?: number;
  /** More QEMU arguments (e.g. `-smbios type=11,value=...`: what the VMM passes to the guest). */
  qemuArgs?: string[];
  /** TCP ports of the guest reachable from the host: 127.0.0.1:hostPort -> guest guestPort (user networking). */
  hostForwards?: { hostPort: number; guestPort: number }[];
}

export interface BootResult {
  /** QEMU exit code (0 after a guest poweroff), null when killed. */
  code: number | null;
  signal: NodeJS.Signals | null;
  timedOut: boolean;
  wallMs: number;
}

const live = new Set<ChildProcess>();
process.on("exit", () => {
  for (const p of live) killGroup(p);
});

/** Each helper runs as `timeout ... CMD` in its own process group: kill both at once. */
function killGroup(p: ChildProcess): void {
  if (p.pid === undefined || p.exitCode !== null || p.signalCode !== null) return;
  try {
    process.kill(-p.pid, "SIGKILL");
  } catch {
    p.kill("SIGKILL");
  }
}

function track(p: ChildProcess): ChildProcess {
  live.add(p);
  p.once("exit", () => live.delete(p));
  return p;
}

function waitForFile(file: string, timeoutMs: number, proc: ChildProcess): Promise<void> {
  const end = Date.now() + timeoutMs;
  return new Promise((resolve, reject) => {
    const tick = () => {
      if (fs.existsSync(file)) return resolve();
      if (proc.exitCode !== null) return reject(new Error(`swtpm exited (${proc.exitCode}) before creating ${file}`));
      if (Date.now() > end) return reject(new Error(`${file} did not appear within ${timeoutMs} ms`));
      setTimeout(tick, 50);
    };
    tick();
  });
}

export class Vm {
  readonly consoleLog: string;
  private readonly chunks: Buffer[] = [];
  private qemu?: ChildProcess;
  private swtpm?: ChildProcess;
  private result?: Promise<BootResult>;
  private waiters: { re: RegExp; resolve: () => void }[] = [];

  constructor(private readonly opts: BootOptions) {
    this.consoleLog = path.join(opts.workDir, "console.log");
  }

  /** Start swtpm and QEMU; resolves once QEMU runs. */
  async start(): Promise<void> {
    const { workDir } = this.opts;
    fs.mkdirSync(workDir, { recursive: true });
    const tpmDir = path.join(workDir, "tpm");
    fs.rmSync(tpmDir, { recursive: true, force: true });
    fs.cpSync(this.opts.swtpmTemplate, tpmDir, { recursive: true });
    const sock = path.join(workDir, "swtpm.sock");
    fs.rmSync(sock, { force: true });
    // timeout(1) bounds both processes even if this test process is killed and cannot clean up;
    // --terminate ends swtpm when QEMU disconnects
    const bound = String(Math.ceil(this.opts.timeoutMs / 1000) + 30);
    this.swtpm = track(
      spawn(
        "timeout",
        [
          "-s",
          "KILL",
          bound,
          "swtpm",
          "socket",
          "--tpm2",
          "--terminate",
          "--tpmstate",
          `dir=${tpmDir}`,
          "--ctrl",
          `type=unixio,path=${sock}`,
          "--log",
          `file=${path.join(workDir, "swtpm.log")},level=1`,
        ],
        {
          stdio: ["ignore", "ignore", "pipe"],
          detached: true,
        },
      ),
    );
    await waitForFile(sock, 10_000, this.swtpm);

    const log = fs.openSync(this.consoleLog, "w");
    const args = [
      "-machine",
      "q35",
      "-accel",
      "tcg",
      "-cpu",
      "max",
      "-smp",
      "2",
      "-m",
      String(this.opts.memoryMb ?? 1024),
      "-nographic",
      "-monitor",
      "none",
      "-no-reboot",
      ...this.bootArgs(workDir),
      "-netdev",
      [
        "user,id=n0",
        ...(this.opts.hostForwards ?? []).map((f) => `hostfwd=tcp:127.0.0.1:${f.hostPort}-:${f.guestPort}`),
      ].join(","),
      "-device",
      `virtio-net-pci,netdev=n0${this.opts.uefi ? ",romfile=" : ""}`,
      "-chardev",
      `socket,id=chrtpm,path=${sock}`,
      "-tpmdev",
      "emulator,id=tpm0,chardev=chrtpm",
      "-device",
      "tpm-crb,tpmdev=tpm0",
      "-object",
      "rng-random,id=rng0,filename=/dev/urandom",
      "-device",
      "virtio-rng-pci,rng=rng0",
      ...(this.opts.qemuArgs ?? []),
    ];
    const t0 = Date.now();
    const qemu = track(
      spawn("timeout", ["-s", "KILL", bound, "qemu-system-x86_64", ...args], {
        stdio: ["ignore", "pipe", "pipe"],
        detached: true,
      }),
    );
    this.qemu = qemu;
    const onData = (b: Buffer) => {
      this.chunks.push(b);
      fs.writeSync(log, b);
      this.checkWaiters();
    };
    qemu.stdout!.on("data", onData);
    qemu.stderr!.on("data", onData);
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      killGroup(qemu);
    }, this.opts.timeoutMs);
    this.result = new Promise<BootResult>((resolve, reject) => {
      qemu.once("error", (e) => (clearTimeout(timer), fs.closeSync(log), reject(e)));
      qemu.once("close", (code, signal) => {
        clearTimeout(timer);
        fs.closeSync(log);
        if (this.swtpm) killGroup(this.swtpm);
        this.checkWaiters();
        resolve({ code, signal, timedOut, wallMs: Date.now() - t0 });
      });
    });
  }

  private bootArgs(workDir: string): string[] {
    // snapshot=on: writes go to a temporary overlay, the cached image stays pristine
    const disk = `file=${this.opts.disk},format=raw,snapshot=on`;
    if (this.opts.uefi) {
      const vars = path.join(workDir, "ovmf-vars.fd");
      fs.copyFileSync("/usr/share/OVMF/OVMF_VARS_4M.fd", vars);
      return [
        "-drive",
        "if=pflash,format=raw,unit=0,readonly=on,file=/usr/share/OVMF/OVMF_CODE_4M.fd",
        "-drive",
        `if=pflash,format=raw,unit=1,file=${vars}`,
        "-drive",
        `${disk},if=none,id=d0`,
        "-device",
        "virtio-blk-pci,drive=d0,bootindex=0",
      ];
    }
    if (!this.opts.kernel || !this.opts.initrd || this.opts.cmdline === undefined)
      throw new Error("direct boot needs kernel, initrd and cmdline");
    return [
      "-kernel",
      this.opts.kernel,
      "-initrd",
      this.opts.initrd,
      "-append",
      this.opts.cmdline,
      "-drive",
      `${disk},if=virtio`,
    ];
  }

  /** The serial console so far without CRs and terminal escapes (raw bytes: see consoleBytes). */
  text(): string {
    return this.consoleBytes()
      .toString("latin1")
      .replace(/\r/g, "")
      .replace(/\x1b(\[[0-9;?]*[A-Za-z]|c)/g, "");
  }

  consoleBytes(): Buffer {
    return Buffer.concat(this.chunks);
  }

  private checkWaiters(): void {
    if (!this.waiters.length) return;
    const t = this.text();
    this.waiters = this.waiters.filter((w) => (w.re.test(t) ? (w.resolve(), false) : true));
  }

  /** Resolves true when the console matches `re`, false on timeout or when QEMU exits first. */
  waitFor(re: RegExp, timeoutMs: number): Promise<boolean> {
    if (re.test(this.text())) return Promise.resolve(true);
    return new Promise((resolve) => {
      const timer = setTimeout(() => done(false), timeoutMs);
      const done = (v: boolean) => {
        clearTimeout(timer);
        this.waiters = this.waiters.filter((w) => w.resolve !== ok);
        resolve(v);
      };
      const ok = () => done(true);
      this.waiters.push({ re, resolve: ok });
      void this.result?.then(() => done(re.test(this.text())));
    });
  }

  /** Waits for QEMU to exit (bounded by timeoutMs given at start). */
  exited(): Promise<BootResult> {
    if (!this.result) throw new Error("VM not started");
    return this.result;
  }

  async stop(): Promise<void> {
    if (this.qemu) killGroup(this.qemu);
    if (this.swtpm) killGroup(this.swtpm);
    if (this.result) await this.result.catch(() => undefined);
  }
}
