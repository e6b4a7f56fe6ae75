// Resources fetched in the run's attested session besides the volume keys (one RCAR handshake, one
// token): e.g. the SSH host identity. `unlock` runs them after the verity root and before any
// volume is opened, so a required extra that is refused or malformed stops the boot first.
import type { AttestedSession } from "../attest.ts";

export interface SessionExtra {
  /** Fetch through the session, check, install, measure. Throws to fail the boot closed. */
  run(session: AttestedSession): Promise<void>;
}
