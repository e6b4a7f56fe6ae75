// One overall deadline for a run, split into bounded waits. Everything that can block
// (HTTP, TPM retries, device waits, configfs polls) asks the deadline how long it may take.
import { CvmError } from "./errors.ts";

export class Deadline {
  readonly expiresAt: number;
  private readonly controller = new AbortController();
  private readonly timer: ReturnType<typeof setTimeout>;

  constructor(
    readonly totalMs: number,
    private readonly now: () => number = Date.now,
  ) {
    this.expiresAt = now() + totalMs;
    this.timer = setTimeout(
      () => this.controller.abort(new CvmError("deadline", `deadline of ${totalMs / 1000}s exceeded`)),
      totalMs,
    );
    this.timer.unref?.();
  }

  static unlimited(): Deadline {
    return new Deadline(2 ** 31 - 1);
  }

  get signal(): AbortSignal {
    return this.controller.signal;
  }

  remainingMs(): number {
    return Math.max(0, this.expiresAt - this.now());
  }

  expired(): boolean {
    return this.remainingMs() <= 0;
  }

  /** Throw a deadline error naming what we were doing. */
  check(doing: string): void {
    if (this.expired()) throw new CvmError("deadline", `deadline of ${this.totalMs / 1000}s exceeded while ${doing}`);
  }

  /** Cap a per-step timeout by what is left. */
  cap(ms: number): number {
    return Math.max(1, Math.min(ms, this.remainingMs()));
  }

  /** Sleep, but never past the deadline; throws if the deadline passes first. */
  async sleep(ms: number, doing: string): Promise<void> {
    const wait = Math.min(ms, this.remainingMs());
    if (wait > 0) {
      await new Promise<void>((resolve) => {
        const onAbort = () => (clearTimeout(t), resolve());
        const t = setTimeout(() => (this.signal.removeEventListener("abort", onAbort), resolve()), wait);
        this.signal.addEventListener("abort", onAbort, { once: true });
      });
    }
    if (ms > wait || this.expired()) this.check(doing);
  }

  dispose(): void {
    clearTimeout(this.timer);
  }
}
