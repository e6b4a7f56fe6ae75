// The SSH host identity as an extra of the unlock session (agent/unlock/session-extras.ts): fetched
// with the first volume key, checked and installed in /run before cryptsetup runs, and measured.
import { CvmError } from "../../platform/util/errors.ts";
import type { Logger } from "../../platform/util/log.ts";
import type { Deadline } from "../../platform/util/deadline.ts";
import { attestAndFetchAll } from "../attest.ts";
import type { Config } from "../config/schema.ts";
import type { Released } from "../kbs/types.ts";
import { measureEvent } from "../measure/measure.ts";
import type { SessionExtras } from "../unlock/session-extras.ts";
import { receiveSshIdentity, sshIdentityDir, sshIdentityEvent, sshIdentityRequests } from "./ssh-identity.ts";

/** `install` false (unlock --test-only): fetched and checked in the session, not written nor measured. */
export function sshIdentitySession(
  config: Config,
  env: { root: string; deadline: Deadline; log: Logger },
  install: boolean,
): SessionExtras | undefined {
  const ssh = config.identity.ssh;
  if (ssh === undefined) return undefined;
  const requests = sshIdentityRequests(ssh);
  const dir = install ? sshIdentityDir(config) : undefined;
  let received = false;
  const receive = async (released: Released[]) => {
    const outcome = receiveSshIdentity(ssh, released, dir, env.log);
    const m = config.unlock.measure;
    if (install)
      await measureEvent(
        m,
        { root: env.root, tpmSpec: config.platform.tpm, deadline: env.deadline, log: env.log },
        "ssh-identity",
        sshIdentityEvent(outcome),
        outcome.fingerprint !== undefined ? "installed" : "none",
      );
    // Only after success: a failure caught by the passphrase fallback must not count as received.
    received = true;
  };
  return {
    requests,
    receive,
    get received() {
      return received;
    },
    async fetchAlone(ctx, timeline) {
      let released: Released[];
      try {
        ({ released } = await attestAndFetchAll(ctx, requests, timeline));
      } catch (e) {
        // Under "optional" even an unreachable KBS only means: no identity (measured as such).
        if (ssh.policy === "required" || !(e instanceof CvmError)) throw e;
        released = requests.map(() => ({ refused: e }));
      }
      try {
        await receive(released);
      } finally {
        for (const r of released) if ("secret" in r) r.secret.fill(0);
      }
    },
  };
}
