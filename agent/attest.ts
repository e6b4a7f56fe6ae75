// The one path from configuration to a released secret, shared by `fetch` and `unlock`:
// select the evidence source, then run the KBS exchange with it.
import { CvmError } from "../platform/util/errors.ts";
import { fileText, readFileBounded } from "../platform/util/files.ts";
import type { Config } from "./config/schema.ts";
import type { Attester, FetchedSecret, KbsClientOptions } from "./kbs/types.ts";
import { readCa, type RunContext } from "./cli/common.ts";
import { refuseShellCmdline } from "./cmdline-guard.ts";
import { selectSource } from "./select.ts";
import type { Timeline } from "./timeline.ts";

const MAX_INIT_DATA_BYTES = 64 * 1024;

/** The KBS inputs the configuration names: endpoints, CA bundle, init-data. */
export function kbsInputs(config: Config): { caPem?: string; initDataToml?: string } {
  if (config.kbs.endpoints.length === 0)
    throw new CvmError("config", "no KBS endpoint configured", {
      hint: "set kbs.endpoints in the config file, or pass --kbs URL",
    });
  return kbsFiles(config);
}

/** The CA bundle and init-data files, read and checked (also by `config --check`). */
export function kbsFiles(config: Config): { caPem?: string; initDataToml?: string } {
  const k = config.kbs;
  const caPem = readCa(config);
  let initDataToml: string | undefined;
  if (k.init_data_file !== undefined) {
    initDataToml = fileText(
      readFileBounded(k.init_data_file, {
        what: "kbs.init_data_file",
        max: MAX_INIT_DATA_BYTES,
        kind: "config",
        regularFile: true,
      }),
    );
  }
  return { ...(caPem !== undefined ? { caPem } : {}), ...(initDataToml !== undefined ? { initDataToml } : {}) };
}

export function kbsOptions(ctx: RunContext, timeline: Timeline): KbsClientOptions {
  const k = ctx.config.kbs;
  return {
    endpoints: k.endpoints,
    ...kbsInputs(ctx.config),
    insecureHttp: k.insecure_http,
    requestTimeoutMs: k.request_timeout_s * 1000,
    attemptsPerEndpoint: k.attempts_per_endpoint,
    resourceAttempts: k.resource_attempts,
    teeKey: k.tee_key,
    deadline: ctx.deadline,
    log: ctx.log,
    timeline,
  };
}

/**
 * Detect the platform and build the attester the KBS client calls once it has the challenge.
 * Sources with begin() start their digest-independent work now, overlapping the KBS handshake.
 */
export async function chooseAttester(
  ctx: RunContext,
  timeline: Timeline,
): Promise<Attester & { close(): Promise<void> }> {
  const { source, tee } = await timeline.time("detect", () => selectSource(ctx.env, ctx.config.platform));
  ctx.log.info(`attesting as tee ${tee} (source ${source.id})`);
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
      return ev.primary;
    },
    close,
  };
}

export async function attestAndFetch(ctx: RunContext, resource: string, timeline: Timeline): Promise<FetchedSecret> {
  // From a shell the host opened with the command line, a key must not be had (exit 16)
  refuseShellCmdline(ctx.env.paths.root);
  const opts = kbsOptions(ctx, timeline); // config errors before touching the platform
  const attester = await chooseAttester(ctx, timeline);
  try {
    // Loaded only now (undici is most of the start-up cost): its evaluation overlaps the work the
    // evidence source began in the background, e.g. the TPM creating the AK.
    const { fetchResource } = await import("./kbs/client.ts");
    return await fetchResource(opts, attester, resource);
  } finally {
    await attester.close();
  }
}
