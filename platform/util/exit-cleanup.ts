// Synchronous clean-ups that must also run when a signal ends the process (SIGTERM from systemd at
// a timeout, SIGINT from a person): a signal handler exits without unwinding `finally` blocks, so
// resources the kernel would otherwise keep (a configfs-tsm entry) register their removal here.
const pending = new Set<() => void>();

/** Register `fn`; the returned function unregisters it (call it from the normal `finally`). */
export function onExitCleanup(fn: () => void): () => void {
  pending.add(fn);
  return () => pending.delete(fn);
}

/** Run every registered clean-up once (from the signal handler), ignoring their errors. */
export function runExitCleanups(): void {
  for (const fn of [...pending]) {
    pending.delete(fn);
    try {
      fn();
    } catch {
      // best effort: the process is exiting
    }
  }
}
