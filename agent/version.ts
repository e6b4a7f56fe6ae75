// Version and commit are injected by build.ts (--define); running from source says "dev".
declare const CVM_UNLOCK_VERSION: string | undefined;
declare const CVM_UNLOCK_COMMIT: string | undefined;

export function buildInfo(): { version: string; commit: string; runtime: string } {
  const version = typeof CVM_UNLOCK_VERSION === "string" ? CVM_UNLOCK_VERSION : "dev";
  const commit = typeof CVM_UNLOCK_COMMIT === "string" ? CVM_UNLOCK_COMMIT : "unknown";
  const runtime = process.versions.bun ? `bun ${process.versions.bun}` : `node ${process.versions.node}`;
  return { version, commit, runtime };
}
