// Resources fetched in the same attested session as a volume key (one RCAR handshake, one token):
// e.g. the SSH host identity. `unlock` appends their requests to the first volume's key request
// and hands over what the KBS released before the key reaches cryptsetup, so a required extra that
// is refused or malformed stops the boot before anything is opened.
import type { Released, ResourceRequest } from "../kbs/types.ts";
import type { RunContext } from "../cli/common.ts";
import type { Timeline } from "../timeline.ts";

export interface SessionExtras {
  /** What to fetch after the volume key, in order. */
  requests: ResourceRequest[];
  /** Takes what the KBS released for `requests` (zeroed by the caller after it returns). Throws to fail closed. */
  receive(released: Released[]): Promise<void>;
  /** True once receive() succeeded. */
  readonly received: boolean;
  /** When no volume key was fetched (all open already, passphrase fallback): a session of its own. */
  fetchAlone(ctx: RunContext, timeline: Timeline): Promise<void>;
}
