// The one path from configuration to a released secret, shared by `fetch` and `unlock`:
// select the evidence source, then run the KBS exchange with it.
import { CvmError } from "../platform/util/errors.ts";
import { readFileBounded } from "../platform/util/files.ts";
import type { Config } from "./config/schema.ts";
import type { Attester, FetchedSecret, KbsClientOptions } from "./kbs/types.ts";
import type { KbsSession } from "./kbs/client.ts";
import { readCa, type RunContext } from "./cli/common.ts";
import { refuseShellCmdline } from "./cmdline-guard.ts";
import { selectSource } from "./select.ts";
import { udevPending, waitForUdevQueue } from "./udev-settle.ts";
import { bindInitDataToPcr8, bindsThroughPcr8, checkLaunchBinding } from "./init-data/binding.ts";
import { describeInitData, MAX_INIT_DATA_BYTES, parseInitData } from "./init-data/document.ts";
import { evidenceSources } from "../platform/registry.ts";
import type { Timeline } from "./timeline.ts";
import type { TeeName } from "../platform/types.ts";

/** The KBS inputs the configuration names: endpoints, CA bundle, init-data file. */
export function kbsInputs(config: Config): { caPem?: string } {
  if (config.kbs.endpoints.length === 0)
    throw new CvmError("config", "no KBS endpoint configured", {
      hint: "set kbs.endpoints in the config file, or pass --kbs URL",
    });
  return kbsFiles(config);
}

/** The CA bundle and the init-data file the configuration names, read and checked (also by `config --check`). */
export function kbsFiles(config: Config): { caPem?: string } {
  const caPem = readCa(config);
  const file = config.kbs.init_data_file;
  if (file !== undefined)
    parseInitData(
      readFileBounded(file, {
        what: "kbs.init_data_file",
        max: MAX_INIT_DATA_BYTES,
        kind: "config",
        regularFile: true,
      }),
      `file:${file}`,
    );
  return caPem !== undefined ? { caPem } : {};
}

export function kbsOptions(ctx: RunContext, timeline: Timeline): KbsClientOptions {
  const k = ctx.config.kbs;
  const { caPem } = kbsInputs(ctx.config);
  if (caPem === undefined && k.endpoints.some((e) => e.startsWith("https:")))
    // Like insecure_http, a widening the trusted config chose by omission: say so on every run.
    ctx.log.warning(
      "kbs.ca_file is not set: the KBS certificate is checked against the system roots (public web PKI), so any public CA can vouch for the KBS host; set kbs.ca_file to the CA that signs the KBS certificate",
    );
  // This run's init-data, read once (agent/init-data/load.ts): the same bytes were bound.
  const initDataToml = ctx.initData?.body;
  return {
    endpoints: k.endpoints,
    ...(caPem !== undefined ? { caPem } : {}),
    ...(initDataToml !== undefined ? { initDataToml } : {}),
    insecureHttp: k.insecure_http,
    requestTimeoutMs: k.request_timeout_s * 1000,
    ...(k.attempts_per_endpoint !== undefined ? { attemptsPerEndpoint: k.attempts_per_endpoint } : {}),
    resourceAttempts: k.resource_attempts,
    teeKey: k.tee_key,
    deadline: ctx.deadline,
    log: ctx.log,
    timeline,
    routeRoot: ctx.env.paths.root,
  };
}

/** init-data through PCR 8 (vTPM evidence): extended once, before any quote. */
export async function bindInitDataBeforeEvidence(ctx: RunContext, tee: TeeName, timeline: Timeline): Promise<void> {
  const initData = ctx.initData;
  if (!initData || !bindsThroughPcr8(tee)) return;
  const how = await timeline.time("init-data", () => bindInitDataToPcr8(initData, ctx.env));
  ctx.log.info(`init-data ${describeInitData(initData)} ${how === "bound" ? "was already" : "is now"} in PCR 8`);
}

/**
 * Select the evidence source once the drivers it needs are there. Started early in the boot, the
 * agent can run before udev has loaded modular TEE drivers. Auto-detection also decides by what is
 * absent (a higher-priority source that is missing), so it waits for udev's queue first; a forced
 * tee needs only its own device and waits only when that device is not there yet.
 */
async function detectPlatform(ctx: RunContext, timeline: Timeline): ReturnType<typeof selectSource> {
  const settle = () =>
    timeline.time("udev", () =>
      waitForUdevQueue(ctx.env.paths.root, ctx.deadline, ctx.log, { triggerMarker: ctx.udevTriggerMarker }),
    );
  const select = () => timeline.time("detect", () => selectSource(ctx.env, ctx.config.platform, evidenceSources));
  if (ctx.config.platform.tee === "auto") {
    await settle();
    return select();
  }
  try {
    return await select();
  } catch (e) {
    const pending = udevPending(ctx.env.paths.root, ctx.udevTriggerMarker);
    if (!(e instanceof CvmError) || e.kind !== "platform" || pending === undefined) throw e;
    ctx.log.debug(`tee ${ctx.config.platform.tee} is not there yet (${e.message}); ${pending}: waiting`);
    await settle();
    return select();
  }
}

/**
 * Detect the platform and build the attester the KBS client calls once it has the challenge.
 * Sources with begin() start their digest-independent work now, overlapping the KBS handshake.
 */
export async function chooseAttester(
  ctx: RunContext,
  timeline: Timeline,
): Promise<Attester & { close(): Promise<void> }> {
  const { source, tee } = await detectPlatform(ctx, timeline);
  ctx.log.info(`attesting as tee ${tee} (source ${source.id})`);
  // PCR 8 before the source opens its TPM session (the AK load below): one TPM client at a time.
  await bindInitDataBeforeEvidence(ctx, tee, timeline);
  const initData = ctx.initData;
  let session = source.begin?.(ctx.env);
  session?.catch(() => {}); // surfaced by collect()
  const close = async () => {
    const s = session;
    session = undefined;
    await s?.then(
      (x) => x.close(),
      () => {},
    );
  };
  return {
    tee,
    async collect(runtimeDigest) {
      const req = { runtimeDigest, tee };
      // A session serves one collection; a repeated handshake (new nonce) collects afresh.
      const first = session;
      const ev = first ? await (await first).collect(req).finally(close) : await source.collect(ctx.env, req);
      for (const [step, ms] of Object.entries(ev.timings ?? {}))
        if (step !== "total") timeline.record(`evidence.${step}`, ms);
      if (initData) checkLaunchBinding(tee, ev.primary, initData);
      return ev.primary;
    },
    async ready() {
      await session?.catch(() => {}); // its error surfaces in collect()
    },
    close,
  };
}

/** One attested KBS session for a run: several resources released under one handshake's token. */
export interface AttestedSession {
  /** Attests on the first call; later resources reuse the token (a new handshake only if it is refused). */
  fetch(resource: string): Promise<FetchedSecret>;
  /**
   * Start the session's preparation now (detection, the TPM AK load, the TEE key, the client's
   * import) without any KBS request, so it overlaps what the caller waits for (the volume's device
   * and header checks). Its errors surface at the first fetch.
   */
  prepare(): void;
  /** Ends the evidence source's session (the TPM AK); idempotent. */
  close(): Promise<void>;
}

/**
 * Open a session lazily: nothing touches the platform or the network until the first fetch, so a
 * run whose checks fail first never attests. The caller closes it when the run is done.
 */
export function openAttestedSession(ctx: RunContext, timeline: Timeline): AttestedSession {
  let started: Promise<{ session: KbsSession; attester: Attester & { close(): Promise<void> } }> | undefined;
  const start = async () => {
    // From a shell the host opened with the command line, a key must not be had (exit 16)
    refuseShellCmdline(ctx.env.paths.root);
    const opts = kbsOptions(ctx, timeline); // config errors before touching the platform
    const attester = await chooseAttester(ctx, timeline);
    try {
      // Loaded only now (undici is most of the start-up cost): its evaluation overlaps the work the
      // evidence source began in the background, e.g. the TPM creating the AK.
      const { openKbsSession } = await import("./kbs/client.ts");
      return { session: await openKbsSession(opts, attester), attester };
    } catch (e) {
      await attester.close();
      throw e;
    }
  };
  return {
    async fetch(resource) {
      started ??= start();
      return (await started).session.fetch(resource);
    },
    prepare() {
      started ??= start();
      started.catch(() => {}); // reported by fetch()
    },
    async close() {
      const s = started;
      started = undefined;
      await s?.then(
        (x) => x.attester.close(),
        () => {},
      );
    },
  };
}

export async function attestAndFetch(ctx: RunContext, resource: string, timeline: Timeline): Promise<FetchedSecret> {
  const session = openAttestedSession(ctx, timeline);
  try {
    return await session.fetch(resource);
  } finally {
    await session.close();
  }
}
