// The SSH host identity as an extra of the unlock session (agent/unlock/session-extras.ts): fetched
// in the run's attested session, checked and installed in /run before any volume is opened, and
// measured.
import { CvmError } from "../../platform/util/errors.ts";
import type { Logger } from "../../platform/util/log.ts";
import type { Deadline } from "../../platform/util/deadline.ts";
import type { AttestedSession } from "../attest.ts";
import type { Config } from "../config/schema.ts";
import type { Released } from "../kbs/types.ts";
import { measureEvent } from "../measure/measure.ts";
import type { SessionExtra } from "../unlock/session-extras.ts";
import { receiveSshIdentity, sshIdentityDir, sshIdentityEvent, sshIdentityRequests } from "./ssh-identity.ts";

/** `install` false (unlock --test-only): fetched and checked in the session, not written nor measured. */
export function sshIdentityExtra(
  config: Config,
  env: { root: string; deadline: Deadline; log: Logger },
  install: boolean,
): SessionExtra | undefined {
  const ssh = config.identity.ssh;
  if (ssh === undefined) return undefined;
  const requests = sshIdentityRequests(ssh);
  const dir = install ? sshIdentityDir(config) : undefined;
  return {
    async run(session: AttestedSession) {
      const released: Released[] = [];
      try {
        for (const req of requests) {
          try {
            released.push({ secret: (await session.fetch(req.path)).secret });
          } catch (e) {
            // Under policy "optional" a refusal, even an unreachable KBS, only means: no identity
            // (measured as such). Under "required" it fails the boot closed.
            if (!(e instanceof CvmError) || !req.optional) throw e;
            released.push({ refused: e });
          }
        }
        const outcome = receiveSshIdentity(ssh, released, dir, env.log);
        if (install)
          await measureEvent(
            config.unlock.measure,
            { root: env.root, tpmSpec: config.platform.tpm, deadline: env.deadline, log: env.log },
            "ssh-identity",
            sshIdentityEvent(outcome),
            outcome.fingerprint !== undefined ? "installed" : "none",
          );
      } finally {
        for (const r of released) if ("secret" in r) r.secret.fill(0);
      }
    },
  };
}
