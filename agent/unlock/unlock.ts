// `cvm-unlock unlock`: for each configured volume, find its device, verify its LUKS2 identity,
// attest and fetch the key (the same path as `fetch`), check the pins, hand the key to
// `cryptsetup open --key-file=-`, measure the opened volume, and remember what was opened
// (for verify-root). Order matters: no key is fetched for, or handed to, a volume whose header
// does not match the trusted configuration.
import * as fs from "node:fs";
import * as path from "node:path";
import { Deadline } from "../../platform/util/deadline.ts";
import { CvmError, errorMessage } from "../../platform/util/errors.ts";
import { silentLogger, type Logger } from "../../platform/util/log.ts";
import { attestAndFetch } from "../attest.ts";
import type { ParsedArgs } from "../cli/args.ts";
import { loadConfig, platformEnv, type RunContext } from "../cli/common.ts";
import type { ConfigLayer, LoadedConfig } from "../config/load.ts";
import type { Config } from "../config/schema.ts";
import { Timeline } from "../timeline.ts";
import { cryptDmUuid, listDmDevices } from "../../platform/luks/block-devices.ts";
import { cmdlineLayer } from "../config/layers/cmdline.ts";
import { DM_NAME_PATTERN, volumeSchema } from "../config/unlock-schema.ts";
import { cryptsetupError, findCryptsetup, runCryptsetup } from "./cryptsetup.ts";
import { checkPins, parseKeyResource } from "./key-document.ts";
import type { Luks2Header } from "../../platform/luks/luks2-header.ts";
import { measureEvent } from "../measure/measure.ts";
import { volumeEvent } from "../measure/events.ts";
import { describeSelector, waitForDevice } from "../../platform/luks/resolve.ts";
import { findCvmToken, tokenLayer } from "../config/layers/token.ts";
import { readLuks2Header } from "../../platform/luks/volume-io.ts";

export type VolumeConfig = Config["unlock"]["volumes"][number];

export interface UnlockRequest {
  args: ParsedArgs;
  log: Logger;
  testOnly: boolean;
  /** Measure even with --test-only (tests of the measurement path). */
  measure: boolean;
  device?: string | undefined;
  name?: string | undefined;
}

export interface VolumeOutcome {
  name: string;
  device: string;
  uuid: string;
  status: "opened" | "already-open" | "key-verified" | "opened-by-passphrase";
  endpoint?: string;
}

/** State file next to the event record: what cvm-unlock opened (no secrets). */
export function openedStatePath(config: Config): string {
  return path.join(path.dirname(config.unlock.measure.record_path), "opened.json");
}

/** Trusted file + (trusted) kernel cmdline + flags. The LUKS token layer is added per volume. */
export function loadUnlockConfig(
  args: ParsedArgs,
  log: Logger,
  root: string,
): { loaded: LoadedConfig; cmdline: ConfigLayer | null } {
  const base = loadConfig(args, log);
  const cmdline = cmdlineLayer(root, base.config, log);
  // Re-merging with more layers: the widening-flag warnings were already logged once.
  return { loaded: cmdline ? loadConfig(args, silentLogger, [cmdline]) : base, cmdline };
}

export function volumesToUnlock(config: Config, device?: string, name?: string): VolumeConfig[] {
  const vols = config.unlock.volumes;
  if (device === undefined && name === undefined) {
    if (vols.length === 0)
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

/** Per-volume config: the LUKS token layer (when trusted) sits between the cmdline and the flags. */
function volumeConfig(
  req: UnlockRequest,
  base: LoadedConfig,
  cmdline: ConfigLayer | null,
  h: Luks2Header,
  device: string,
): LoadedConfig {
  const tok = findCvmToken(h);
  if (!tok) return base;
  if (!base.config.unlock.luks_token.trust) {
    req.log.info(`ignoring the cvm-unlock LUKS2 token on ${device}: unlock.luks_token.trust is not set`);
    return base;
  }
  return loadConfig(req.args, silentLogger, [...(cmdline ? [cmdline] : []), tokenLayer(device, tok, base.config)]);
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
  req: UnlockRequest,
  ctx: RunContext,
  vol: VolumeConfig,
  device: string,
  h: Luks2Header,
  timeline: Timeline,
): Promise<VolumeOutcome> {
  const resource = volumeResource(vol, ctx.config);
  const bin = findCryptsetup(ctx.config.unlock.cryptsetup);
  const { secret, endpoint } = await attestAndFetch(ctx, resource, timeline);
  let key: Buffer | undefined;
  try {
    const doc = parseKeyResource(secret);
    key = doc.key;
    if (ctx.config.unlock.require_pins && doc.pins.uuid === undefined && doc.pins.luks2DigestSha256 === undefined)
      throw new CvmError(
        "volume",
        `the KBS resource ${resource} carries no volume pins, but unlock.require_pins is set: refusing`,
        { hint: "store a cvm-unlock key document with pins (docs/UNLOCK.md)" },
      );
    checkPins(
      { uuid: vol.pins.uuid?.toLowerCase(), luks2DigestSha256: vol.pins.luks2_digest_sha256?.toLowerCase() },
      h,
      device,
    );
    checkPins(doc.pins, h, device);
    const args = req.testOnly
      ? ["open", "--test-passphrase", "--type", "luks2", "--key-file=-", device]
      : ["open", "--type", "luks2", "--key-file=-", device, vol.name];
    const r = await timeline.time("unlock", () =>
      runCryptsetup(bin, args, doc.key, ctx.deadline, req.testOnly ? "testing the key on" : "opening"),
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
  h: Luks2Header,
): Promise<VolumeOutcome> {
  const bin = findCryptsetup(ctx.config.unlock.cryptsetup);
  const r = await runCryptsetup(
    bin,
    ["open", "--type", "luks2", device, vol.name],
    "inherit",
    ctx.deadline,
    "asking for a passphrase for",
  );
  if (r.code !== 0) throw cryptsetupError(r, device, "opening (passphrase)");
  return { name: vol.name, device, uuid: h.uuid, status: "opened-by-passphrase" };
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

function recordOpened(config: Config, outcomes: VolumeOutcome[]): void {
  const p = openedStatePath(config);
  const opened = outcomes
    .filter((o) => o.status !== "key-verified")
    .map(({ name, uuid, device }) => ({ name, uuid, device }));
  if (opened.length === 0) return;
  fs.mkdirSync(path.dirname(p), { recursive: true, mode: 0o755 });
  fs.writeFileSync(p, JSON.stringify({ volumes: opened }) + "\n", { mode: 0o644 });
}

export async function unlockVolumes(req: UnlockRequest, timeline: Timeline): Promise<VolumeOutcome[]> {
  const root = path.resolve((req.args.options.get("platform-root") as string | undefined) ?? "/");
  const { loaded: base, cmdline } = loadUnlockConfig(req.args, req.log, root);
  const deadline = new Deadline(base.config.deadline_s * 1000);
  const outcomes: VolumeOutcome[] = [];
  try {
    for (const vol of volumesToUnlock(base.config, req.device, req.name)) {
      const device = await timeline.time(
        "device",
        () => waitForDevice(vol, root, base.config.unlock.device_timeout_s, deadline, req.log),
        describeSelector(vol),
      );
      const h = readLuks2Header(device);
      checkIdentity(vol, h, device);
      req.log.info(`volume ${vol.name}: ${device} is LUKS2 ${h.uuid}`);
      const loaded = volumeConfig(req, base, cmdline, h, device);
      const ctx: RunContext = {
        loaded,
        config: loaded.config,
        deadline,
        env: platformEnv(loaded.config, req.args, deadline, req.log),
        log: req.log,
      };
      if (!req.testOnly && alreadyOpen(root, vol.name, h.uuid)) {
        req.log.notice(`volume ${vol.name} (${h.uuid}) is already open: nothing to do`);
        outcomes.push({ name: vol.name, device, uuid: h.uuid, status: "already-open" });
        recordOpened(base.config, outcomes);
        continue;
      }
      let outcome: VolumeOutcome;
      try {
        outcome = await openWithKey(req, ctx, vol, device, h, timeline);
      } catch (e) {
        if (req.testOnly || !ctx.config.unlock.passphrase_fallback || !fallbackAllowed(e)) throw e;
        req.log.warning(
          `KBS unlock of ${vol.name} failed (${errorMessage(e)}); unlock.passphrase_fallback is set: asking on the console`,
        );
        outcome = await openWithPassphrase(ctx, vol, device, h);
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
    return outcomes;
  } finally {
    deadline.dispose();
  }
}
