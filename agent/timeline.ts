// Phase timeline (detect, evidence, auth, attest, resource, decrypt, unlock, ...): printed by the
// demo, written as JSON by --timings, and read by the bench. Contains durations only, never data.
export interface PhaseRecord {
  phase: string;
  ms: number;
  detail?: string;
}

export class Timeline {
  readonly phases: PhaseRecord[] = [];
  private readonly t0 = performance.now();

  async time<T>(phase: string, fn: () => Promise<T>, detail?: string): Promise<T> {
    const start = performance.now();
    try {
      return await fn();
    } finally {
      this.record(phase, performance.now() - start, detail);
    }
  }

  record(phase: string, ms: number, detail?: string): void {
    this.phases.push(detail === undefined ? { phase, ms } : { phase, ms, detail });
  }

  totalMs(): number {
    return performance.now() - this.t0;
  }

  toJSON(): { phases: PhaseRecord[]; total_ms: number } {
    return {
      phases: this.phases.map((p) => ({ ...p, ms: Math.round(p.ms * 100) / 100 })),
      total_ms: Math.round(this.totalMs() * 100) / 100,
    };
  }

  format(): string {
    return this.phases
      .map((p) => `  ${p.phase.padEnd(10)} ${p.ms.toFixed(1).padStart(9)} ms${p.detail ? `  ${p.detail}` : ""}`)
      .join("\n");
  }
}
