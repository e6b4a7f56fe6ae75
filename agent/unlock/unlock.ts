// `cvm-unlock unlock`: for each configured volume, find its device, verify its LUKS2 identity,
// header allow-list and trusted pins, attest and fetch the key (the same path as `fetch`), check
// the key document's pins, hand the key to cryptsetup with a private copy of the verified header
// (open-verified.ts), measure the opened volume, and remember what was opened (for verify-root).
// Order matters: no key is fetched for, or handed to, a volume whose header does not match the
// trusted configuration.
import * as path from "node:path";
import { Deadline } from "../../platform/util/deadline.ts";
import { CvmError, errorMessage } from "../../platform/util/errors.ts";
import { silentLogger, type Logger } from "../../platform/util/log.ts";
import { attestAndFetch, openAttestedSession, type AttestedSession } from "../attest.ts";
import type { FetchedSecret } from "../kbs/types.ts";
import { openVerityVolumes, type VerityOutcome } from "../verity/open.ts";
import { loadConfigWithInitData, platformEnv, type RunContext } from "../cli/common.ts";
import type { InitDataDocument } from "../init-data/document.ts";
import type { ConfigLayer, ConfigLoader, LoadedConfig } from "../config/load.ts";
import type { Config } from "../config/schema.ts";
import { Timeline } from "../timeline.ts";
import { cryptDmUuid, listDmDevices } from "../../platform/luks/block-devices.ts";
import { cmdlineLayer } from "../config/layers/cmdline.ts";
import { DM_NAME_PATTERN, volumeSchema } from "../config/unlock-schema.ts";
import { cryptsetupError, findCryptsetup } from "./cryptsetup.ts";
import { checkPins, hasPins, parseKeyResource, type VolumePins } from "./key-document.ts";
import type { Luks2Header } from "../../platform/luks/luks2-header.ts";
import { verifyHeaderPolicy, type VerifiedLayout } from "./header-policy.ts";
import { openVerified, type VerifiedOpen } from "./open-verified.ts";
import { measureEvent } from "../measure/measure.ts";
import { volumeEvent } from "../measure/events.ts";
import { describeSelector, waitForDevice } from "../../platform/luks/resolve.ts";
import { findCvmToken, tokenLayer } from "../config/layers/token.ts";
import { readLuks2Volume, type Luks2Volume } from "../../platform/luks/volume-io.ts";
import { openedStatePath, writeOpenedState } from "./opened-state.ts";
import { sshIdentityExtra } from "../identity/ssh-session.ts";
import { restoreNormalPriority } from "./priority.ts";

export type VolumeConfig = Config["unlock"]["volumes"][number];

export interface UnlockRequest {
  /** Platform root for /sys, /dev, /proc ("/" in production; a stand-in tree for testers). */
  root: string;
  /** Loads the configuration with extra host-influenced layers (cmdline, LUKS token) below the flags. */
  loadConfig: ConfigLoader;
  log: Logger;
  testOnly: boolean;
  /** Measure even with --test-only (tests of the measurement path). */
  measure: boolean;
  device?: string | undefined;
  name?: string | undefined;
  /** See RunContext.udevTriggerMarker. */
  udevTriggerMarker?: string | undefined;
  /** Started at a low priority (the boot unit's Nice=19): back to nice 0 once the volumes are checked. */
  reniceWhenReady?: boolean;
}

export interface VolumeOutcome {
  name: string;
  device: string;
  uuid: string;
  status: "opened" | "already-open" | "key-verified" | "opened-by-passphrase" | "served";
  endpoint?: string;
}

/**
 * Trusted file + init-data (when the trusted config lets it configure) + (trusted) kernel cmdline +
 * flags. The LUKS token layer is added per volume, above `hostLayers`.
 */
export async function loadUnlockConfig(
  load: ConfigLoader,
  log: Logger,
  root: string,
): Promise<{ loaded: LoadedConfig; hostLayers: ConfigLayer[]; initData: InitDataDocument | undefined }> {
  const { loaded: withInitData, initData, layers } = await loadConfigWithInitData(load, log, root);
  const cmdline = cmdlineLayer(root, withInitData.config, log);
  const hostLayers = [...layers, ...(cmdline ? [cmdline] : [])];
  // Re-merging with more layers: the widening-flag warnings were already logged once.
  return { loaded: cmdline ? load(silentLogger, hostLayers) : withInitData, hostLayers, initData };
}

export function volumesToUnlock(config: Config, device?: string, name?: string): VolumeConfig[] {
  const vols = config.unlock.volumes;
  if (device === undefined && name === undefined) {
    if (vols.length === 0 && config.verity === undefined)
      throw new CvmError("config", "no volume to unlock", {
        hint: "configure unlock.volumes, or pass --device PATH [--name NAME]",
      });
    return vols;
  }
  if (vols.length > 1)
    throw new CvmError("usage", "--device/--name select a single volume, but unlock.volumes lists several");
  if (name !== undefined && !DM_NAME_PATTERN.test(name))
    throw new CvmError("usage", `--name ${JSON.stringify(name)} is not a valid device-mapper name`);
  const v: VolumeConfig = vols[0] ?? volumeSchema.parse({}, "unlock.volumes[0]");
  // --device replaces the selector; a configured uuid stays and is still checked against the header.
  return [
    {
      ...v,
      ...(device !== undefined ? { device, partlabel: undefined, gpt_auto_root: false } : {}),
      ...(name !== undefined ? { name } : {}),
    },
  ];
}

/** A volume whose header passed the identity, allow-list and trusted-config pin checks (before any KBS request). */
export interface CheckedVolume {
  volume: Luks2Volume;
  verified: VerifiedLayout;
  root: string;
}

function configPins(vol: VolumeConfig): VolumePins {
  return {
    uuid: vol.pins.uuid?.toLowerCase(),
    luks2DigestSha256: vol.pins.luks2_digest_sha256?.toLowerCase(),
    luks2FingerprintV2: vol.pins.luks2_fingerprint_v2?.toLowerCase(),
  };
}

function verifiedOpen(
  ctx: RunContext,
  vol: VolumeConfig,
  device: string,
  c: CheckedVolume,
  testOnly: boolean,
): VerifiedOpen {
  return {
    cryptsetup: findCryptsetup(ctx.config.unlock.cryptsetup),
    dmsetup: ctx.config.unlock.dmsetup,
    device,
    name: vol.name,
    testOnly,
    volume: c.volume,
    verified: c.verified,
    stateDir: path.dirname(openedStatePath(ctx.config)),
    root: c.root,
    deadline: ctx.deadline,
    log: ctx.log,
  };
}

/** The KBS resource holding this volume's key (also checked by `config --check`). */
export function volumeResource(vol: VolumeConfig, config: Config): string {
  const resource = vol.resource ?? config.resource;
  if (resource === undefined)
    throw new CvmError("config", `volume ${vol.name}: no KBS resource`, {
      hint: "set resource (or unlock.volumes[].resource) in the config, or pass --resource",
    });
  return resource;
}

function checkIdentity(vol: VolumeConfig, h: Luks2Header, device: string): void {
  if (vol.uuid !== undefined && vol.uuid.toLowerCase() !== h.uuid)
    throw new CvmError(
      "volume",
      `${device} has LUKS UUID ${h.uuid}, but volume ${vol.name} must be ${vol.uuid.toLowerCase()}: refusing (swapped volume?)`,
    );
}

/**
 * Find the volume's device (bounded wait) and check its header before any KBS request: the LUKS
 * UUID it must have, the trusted allow-list and the trusted config's pins. Shared by both modes.
 */
export async function checkVolume(
  vol: VolumeConfig,
  root: string,
  config: Config,
  deadline: Deadline,
  log: Logger,
  timeline: Timeline,
): Promise<{ device: string; checked: CheckedVolume }> {
  const device = await timeline.time(
    "device",
    () => waitForDevice(vol, root, config.unlock.device_timeout_s, deadline, log),
    describeSelector(vol),
  );
  const volume = readLuks2Volume(device, root);
  const h = volume.header;
  checkIdentity(vol, h, device);
  const checked: CheckedVolume = { volume, verified: verifyHeaderPolicy(h, config.unlock.luks_allow, device), root };
  checkPins(configPins(vol), h, device, "the trusted config");
  log.info(`volume ${vol.name}: ${device} is LUKS2 ${h.uuid}`);
  return { device, checked };
}

/** Per-volume config: the LUKS token layer (when trusted) sits between the cmdline and the flags. */
export function volumeConfig(
  req: Pick<UnlockRequest, "loadConfig" | "log">,
  base: LoadedConfig,
  hostLayers: ConfigLayer[],
  h: Luks2Header,
  device: string,
): LoadedConfig {
  const tok = findCvmToken(h);
  if (!tok) return base;
  if (!base.config.unlock.luks_token.trust) {
    req.log.info(`ignoring the cvm-unlock LUKS2 token on ${device}: unlock.luks_token.trust is not set`);
    return base;
  }
  return req.loadConfig(silentLogger, [...hostLayers, tokenLayer(device, tok, base.config)]);
}

function alreadyOpen(root: string, name: string, uuid: string): boolean {
  const dm = listDmDevices(root).find((d) => d.name === name);
  if (!dm) return false;
  if (dm.uuid === cryptDmUuid(uuid, name)) return true;
  throw new CvmError(
    "volume",
    `a device-mapper device named ${name} already exists (dm uuid ${JSON.stringify(dm.uuid)}) and is not LUKS volume ${uuid}: refusing`,
    {
      hint: "something else opened a mapping under this name before cvm-unlock; check for a competing crypttab/rd.luks unit (boot with rd.luks=0)",
    },
  );
}

async function openWithKey(
  req: UnlockRequest & { timeline: Timeline },
  ctx: RunContext,
  vol: VolumeConfig,
  device: string,
  checked: CheckedVolume,
  fetch: (resource: string) => Promise<FetchedSecret>,
): Promise<VolumeOutcome> {
  const h = checked.volume.header;
  const resource = volumeResource(vol, ctx.config);
  const open = verifiedOpen(ctx, vol, device, checked, req.testOnly);
  const { secret, endpoint } = await fetch(resource);
  let key: Buffer | undefined;
  try {
    const doc = parseKeyResource(secret);
    key = doc.key;
    if (ctx.config.unlock.require_pins && !hasPins(doc.pins))
      throw new CvmError(
        "volume",
        `the KBS resource ${resource} carries no volume pins, but unlock.require_pins is set: refusing`,
        { hint: "store a cvm-unlock key document with pins (docs/UNLOCK.md)" },
      );
    checkPins(doc.pins, h, device);
    const r = await req.timeline.time("unlock", () =>
      openVerified(open, doc.key, req.testOnly ? "testing the key on" : "opening"),
    );
    if (r.code !== 0) throw cryptsetupError(r, device, req.testOnly ? "testing the key on" : "opening");
    return { name: vol.name, device, uuid: h.uuid, status: req.testOnly ? "key-verified" : "opened", endpoint };
  } finally {
    // Only now: cryptsetup has exited (or was never started), so nothing still reads these bytes.
    key?.fill(0);
    secret.fill(0);
  }
}

/** The console fallback: cryptsetup asks for the passphrase itself (we never see it). */
async function openWithPassphrase(
  ctx: RunContext,
  vol: VolumeConfig,
  device: string,
  checked: CheckedVolume,
): Promise<VolumeOutcome> {
  const r = await openVerified(
    verifiedOpen(ctx, vol, device, checked, false),
    "inherit",
    "asking for a passphrase for",
  );
  if (r.code !== 0) throw cryptsetupError(r, device, "opening (passphrase)");
  return { name: vol.name, device, uuid: checked.volume.header.uuid, status: "opened-by-passphrase" };
}

/** Failures after which a console passphrase may be offered. Identity failures never qualify. */
function fallbackAllowed(e: unknown): boolean {
  return (
    e instanceof CvmError &&
    [
      "network",
      "tls",
      "kbs-refused",
      "kbs-protocol",
      "resource-missing",
      "decrypt",
      "platform",
      "evidence",
      "wrong-key",
    ].includes(e.kind)
  );
}

export function recordOpened(
  config: Config,
  outcomes: Pick<VolumeOutcome, "name" | "uuid" | "device" | "status">[],
): void {
  const opened = outcomes
    .filter((o) => o.status !== "key-verified")
    .map(({ name, uuid, device }) => ({ name, uuid, device }));
  if (opened.length === 0) return;
  const file = openedStatePath(config);
  try {
    writeOpenedState(file, opened);
  } catch (e) {
    // verify-root needs this record to accept the root: without it the boot must not go on.
    throw new CvmError("platform", `cannot record the opened volumes in ${file}: ${errorMessage(e)}`, {
      hint: "/run must be a writable tmpfs with free space in the initramfs",
    });
  }
}

export interface UnlockOutcomes {
  verity: VerityOutcome[];
  volumes: VolumeOutcome[];
}

export async function unlockVolumes(req: UnlockRequest, timeline: Timeline): Promise<UnlockOutcomes> {
  const root = req.root;
  const { loaded: base, hostLayers, initData } = await loadUnlockConfig(req.loadConfig, req.log, root);
  const deadline = new Deadline(base.config.deadline_s * 1000);
  const outcomes: VolumeOutcome[] = [];
  const baseCtx: RunContext = {
    loaded: base,
    config: base.config,
    deadline,
    env: platformEnv(base.config, root, deadline, req.log),
    log: req.log,
    initData,
    udevTriggerMarker: req.udevTriggerMarker,
  };
  // One attested session for the run: the verity resource and the keys of the volumes whose
  // configuration is the base one (a LUKS2 token layer may pick another KBS: its own session).
  const session: AttestedSession = openAttestedSession(baseCtx, timeline);
  // The SSH host identity rides in the same session, fetched before the first volume key so that a
  // required identity the KBS refuses stops the boot before anything is opened; --test-only checks
  // it without installing it (unless --measure: tests of the boot path).
  const extra = sshIdentityExtra(base.config, { root, deadline, log: req.log }, !req.testOnly || req.measure);
  let extraDone = extra === undefined;
  const runExtra = async () => {
    if (extraDone) return;
    extraDone = true;
    await extra!.run(session);
  };
  try {
    const toUnlock = volumesToUnlock(base.config, req.device, req.name);
    // The agent starts early in the boot (docs/UNLOCK.md "Boot ordering"): detection, the TPM AK
    // load and the TEE key overlap the wait for the devices and their header checks; nothing
    // reaches the KBS before the first fetch, which comes after those checks. Not when a trusted
    // LUKS2 token may pick other KBS settings (its own session), nor when every volume is open
    // already (a restarted unit needs no KBS).
    const open = new Set(listDmDevices(root).map((d) => d.name));
    if (
      !base.config.unlock.luks_token.trust &&
      (base.config.verity !== undefined || toUnlock.some((v) => !open.has(v.name)))
    )
      session.prepare();
    // Every LUKS2 header is checked before the first KBS request (the verity resource comes
    // first): a header the host tampered with means no attestation at all in this run.
    const checkedVolumes = [];
    for (const vol of toUnlock)
      checkedVolumes.push({ vol, ...(await checkVolume(vol, root, base.config, deadline, req.log, timeline)) });
    if (req.reniceWhenReady) restoreNormalPriority(req.log);
    const verity =
      req.device === undefined
        ? await openVerityVolumes(baseCtx, session, timeline, {
            testOnly: req.testOnly,
            measure: req.measure,
            luksNames: toUnlock.map((v) => v.name),
          })
        : [];
    for (const { vol, device, checked } of checkedVolumes) {
      const h = checked.volume.header;
      const loaded = volumeConfig(req, base, hostLayers, h, device);
      const ctx: RunContext = {
        loaded,
        config: loaded.config,
        deadline,
        env: platformEnv(loaded.config, root, deadline, req.log),
        log: req.log,
        initData,
        udevTriggerMarker: req.udevTriggerMarker,
      };
      if (!req.testOnly && alreadyOpen(root, vol.name, h.uuid)) {
        req.log.notice(`volume ${vol.name} (${h.uuid}) is already open: nothing to do`);
        outcomes.push({ name: vol.name, device, uuid: h.uuid, status: "already-open" });
        recordOpened(base.config, outcomes);
        continue;
      }
      // Outside the passphrase fallback below: a required identity the KBS refuses fails the boot
      // closed; a console passphrase opens a volume, it never stands in for the identity.
      await runExtra();
      let outcome: VolumeOutcome;
      try {
        const fetch = loaded === base ? session.fetch : (r: string) => attestAndFetch(ctx, r, timeline);
        outcome = await openWithKey({ ...req, timeline }, ctx, vol, device, checked, fetch);
      } catch (e) {
        if (req.testOnly || !ctx.config.unlock.passphrase_fallback || !fallbackAllowed(e)) throw e;
        req.log.warning(
          `KBS unlock of ${vol.name} failed (${errorMessage(e)}); unlock.passphrase_fallback is set: asking on the console`,
        );
        outcome = await openWithPassphrase(ctx, vol, device, checked);
      }
      outcomes.push(outcome);
      // Record before measuring: even if the measurement fails, verify-root must know what is open.
      if (!req.testOnly) recordOpened(base.config, outcomes);
      if (!req.testOnly || req.measure) {
        const m = ctx.config.unlock.measure;
        await timeline.time("measure", () =>
          measureEvent(
            m,
            { root, tpmSpec: ctx.config.platform.tpm, deadline, log: req.log },
            "volume",
            volumeEvent(vol.name, h.uuid),
            outcome.status,
          ),
        );
      }
    }
    await runExtra(); // no volume needed a key (all open already, or a verity-only run)
    return { verity, volumes: outcomes };
  } finally {
    await session.close();
    deadline.dispose();
  }
}
