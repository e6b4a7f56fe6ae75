// The generic `tpm` evidence source (trustee tee "tpm"): a TPM 2.0 quote with an RSA AK. Not
// TEE-bound — trust comes only from the KBS policy's trusted_aks list.
import { CvmError, errorMessage } from "../util/errors.ts";
import { checkRuntimeDigest } from "../types.ts";
import type { EvidenceSession, EvidenceSource, PlatformEnv, Probe } from "../types.ts";
import { TPM_ALG, TPM_PT, algName } from "./constants.ts";
import { openTpm, withTpm } from "./client.ts";
import { collectTpmEvidence } from "./attestation/evidence.ts";
import { describeTpmPlatform, firmwareVersion, manufacturerName } from "./describe.ts";
import { tpmPresent } from "./transport/index.ts";
import { getPcrBanks, getProperties } from "./operations.ts";

const PROBE_CONNECT_MS = 2_000;
const PROBE_COMMAND_MS = 10_000;

export interface TpmSourceOptions {
  /** How long the probe waits for a socket TPM to accept (tests shorten it). */
  probeConnectMs?: number;
}

async function probe(env: PlatformEnv, opts: TpmSourceOptions): Promise<Probe> {
  if (!tpmPresent(env.tpm.spec, env.paths.root))
    return {
      source: "tpm",
      status: "absent",
      reason: `no TPM device at ${env.tpm.spec}`,
      hint: "the VM needs a (v)TPM and its driver: modprobe tpm_crb (or tpm_tis) in the initramfs",
    };
  // The TPM is there (device node, or a socket the tester named): from here on, failing is broken.
  let tpm;
  try {
    tpm = await openTpm(env.tpm.spec, env.deadline, env.log, {
      root: env.paths.root,
      connectTimeoutMs: opts.probeConnectMs ?? PROBE_CONNECT_MS,
      commandTimeoutMs: PROBE_COMMAND_MS,
    });
  } catch (e) {
    return {
      source: "tpm",
      status: "broken",
      reason: errorMessage(e),
      ...(e instanceof CvmError && e.hint ? { hint: e.hint } : {}),
    };
  }
  try {
    const props = await getProperties(tpm);
    const banks = await getPcrBanks(tpm);
    const active = banks.filter((b) => b.pcrs.length > 0).map((b) => algName(b.hash));
    const details: Record<string, string> = {
      transport: tpm.description,
      manufacturer: manufacturerName(props.get(TPM_PT.MANUFACTURER)),
      firmware: firmwareVersion(props.get(TPM_PT.FIRMWARE_VERSION_1), props.get(TPM_PT.FIRMWARE_VERSION_2)),
      banks: active.join(",") || "none",
    };
    if (!banks.some((b) => b.hash === TPM_ALG.SHA256 && b.pcrs.length > 0))
      return {
        source: "tpm",
        status: "broken",
        reason: `TPM at ${tpm.description} has no active SHA-256 PCR bank`,
        hint: "activate it: tpm2_pcrallocate sha256:all, then reboot",
        details,
      };
    return {
      source: "tpm",
      status: "present",
      tee: "tpm",
      reason: `TPM 2.0 (${details.manufacturer}) answers at ${tpm.description}`,
      details,
    };
  } catch (e) {
    return {
      source: "tpm",
      status: "broken",
      reason: `TPM at ${tpm.description} did not answer GetCapability: ${errorMessage(e)}`,
    };
  } finally {
    tpm.close();
  }
}

// The AK (a CreatePrimary: tens to hundreds of ms on swtpm) is loaded while the KBS handshake
// runs; the quote waits for the digest. withTpm/withAttestationKey still flush and close on
// every path, including a session closed without a digest.
async function begin(env: PlatformEnv): Promise<EvidenceSession> {
  let giveDigest!: (d: Uint8Array) => void;
  let cancel!: (e: Error) => void;
  const digest = new Promise<Uint8Array>((resolve, reject) => ((giveDigest = resolve), (cancel = reject)));
  digest.catch(() => {});
  const result = withTpm(
    env.tpm.spec,
    env.deadline,
    env.log,
    (tpm) => collectTpmEvidence(tpm, digest, env.tpm.akHandle),
    { root: env.paths.root },
  );
  result.catch(() => {});
  return {
    async collect(req) {
      checkRuntimeDigest(req, "tpm evidence");
      giveDigest(req.runtimeDigest);
      const r = await result;
      env.log.debug("TPM quote collected", { ak: r.akOrigin, ...r.timings });
      return { tee: "tpm", primary: r.evidence, timings: r.timings };
    },
    async close() {
      cancel(new CvmError("internal", "TPM evidence session closed before a digest was given"));
      await result.catch(() => {});
    },
  };
}

export function makeTpmSource(opts: TpmSourceOptions = {}): EvidenceSource {
  return {
    id: "tpm",
    tees: ["tpm"],
    insecure: false,
    probe: (env) => probe(env, opts),
    begin,
    async collect(env, req) {
      const session = await begin(env);
      try {
        return await session.collect(req);
      } finally {
        await session.close();
      }
    },
    describe: describeTpmPlatform,
  };
}
