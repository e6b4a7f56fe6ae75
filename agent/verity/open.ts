// Open the dm-verity volumes whose root hash the KBS releases (docs/VERITY.md), inside `unlock`'s
// attested session: refuse a command line that sets its own verity hash, and an initramfs where
// systemd-gpt-auto-generator could mount an unverified root; fetch and validate the resource; check
// the owner's signature when verity.signer_cert is configured; find the data and hash partitions;
// `veritysetup open` (or `verify` with --test-only); read the live table back; record the hash for
// verify-root; measure "verity:<name>:<roothash>". The root hash is not secret (argv is fine).
import { readKernelCmdline } from "../cmdline-guard.ts";
import * as fs from "node:fs";
import * as path from "node:path";
import { devnoOf } from "../../platform/luks/block-devices.ts";
import { findGptPartition, findPartLabel, waitUntilFound } from "../../platform/luks/resolve.ts";
import { GPT_ROOT_X86_64 } from "../../platform/luks/gpt.ts";
import { CvmError, errorMessage } from "../../platform/util/errors.ts";
import { fileText, readFileBounded } from "../../platform/util/files.ts";
import type { AttestedSession } from "../attest.ts";
import type { RunContext } from "../cli/common.ts";
import type { Config } from "../config/schema.ts";
import { splitCmdline } from "../config/layers/cmdline.ts";
import { verityEvent } from "../measure/events.ts";
import { measureEvent } from "../measure/measure.ts";
import type { Timeline } from "../timeline.ts";
import { findCryptsetup, runCryptsetup } from "../unlock/cryptsetup.ts";
import {
  derivedPartUuid,
  GPT_ROOT_VERITY_X86_64,
  parseVerityResource,
  type DeviceRef,
  type VerityVolume,
} from "./resource.ts";
import { checkRootHashSignature, signerCertificates } from "./signature.ts";
import { writeVerityState, verityStatePath, type OpenedVerity } from "./state.ts";
import { parseDmVerityTable, verityTableProblem } from "./table.ts";
import {
  blockDigest,
  effectiveParams,
  parseVeritySuperblock,
  rootBlockLocation,
  VERITY_SB_SIZE,
} from "./superblock.ts";

/** Kernel parameters that make systemd set up verity from the (host-writable) command line. */
const CMDLINE_VERITY = /^(roothash|usrhash|systemd\.verity_(root|usr)_[a-z_]+)$/;

/** The name as systemd matches it: "-" and "_" are the same, and an "rd." prefix counts in the initramfs. */
function systemdParamName(token: string): string {
  const eq = token.indexOf("=");
  return eq < 0 ? "" : token.slice(0, eq).replace(/^rd\./, "").replaceAll("-", "_");
}
const GPT_AUTO_MASK = "etc/systemd/system-generators/systemd-gpt-auto-generator";
const MAX_SIGNER_PEM = 64 * 1024;

type VerityConfig = NonNullable<Config["verity"]>;

export interface VerityOutcome {
  name: string;
  roothash: string;
  data: string;
  hash: string;
  status: "opened" | "already-open" | "verified";
}

/** Refuse when /proc/cmdline carries its own root hash: systemd's generators would act on it. */
export function refuseVerityCmdline(root: string): void {
  const text = readKernelCmdline(root);
  if (text === undefined) return;
  const found = splitCmdline(text).filter((t) => CMDLINE_VERITY.test(systemdParamName(t)));
  if (found.length)
    throw new CvmError(
      "unsafe-cmdline",
      `the kernel command line sets a verity root itself (${found.map((t) => t.split("=")[0]).join(", ")}): refusing, the root hash comes from the KBS`,
      { hint: "remove roothash=/usrhash=/systemd.verity_* from the command line (docs/VERITY.md)" },
    );
}

/**
 * In the initramfs, systemd-gpt-auto-generator must be masked: it reads /proc/cmdline (not
 * etc/cmdline.d) and could mount the root partition it finds by type without verity.
 */
export function requireGptAutoMasked(root: string): void {
  if (!fs.existsSync(path.join(root, "etc/initrd-release"))) return; // not an initramfs (tests, a running system)
  let target: string | undefined;
  try {
    target = fs.readlinkSync(path.join(root, GPT_AUTO_MASK));
  } catch {
    target = undefined;
  }
  if (target !== "/dev/null")
    throw new CvmError(
      "config",
      `verity is configured but /${GPT_AUTO_MASK} is not masked: systemd-gpt-auto-generator could mount an unverified root`,
      {
        hint: "build the initramfs with the cvm-unlock dracut module (it masks the generator when verity is configured)",
      },
    );
}

function describeRef(r: DeviceRef, v: VerityVolume): string {
  if ("partlabel" in r) return `PARTLABEL=${r.partlabel}`;
  if ("partuuid" in r) return `PARTUUID=${r.partuuid}`;
  return `PARTUUID=${derivedPartUuid(v.roothash, r.derived)} (derived, type ${r.derived === "data" ? "root" : "root-verity"})`;
}

function findRef(r: DeviceRef, v: VerityVolume, root: string): string | undefined {
  if ("partlabel" in r) return findPartLabel(root, r.partlabel);
  if ("partuuid" in r) return findGptPartition(root, r.partuuid);
  // Discoverable Partitions: the partition types must match too (x86-64 root and its verity partition)
  return findGptPartition(
    root,
    derivedPartUuid(v.roothash, r.derived),
    r.derived === "data" ? GPT_ROOT_X86_64 : GPT_ROOT_VERITY_X86_64,
  );
}

/** veritysetup arguments after the action and devices: the format parameters and the corruption action. */
export function veritysetupOptions(v: VerityVolume): string[] {
  const o = v.options;
  const args: string[] = [];
  if (o.corruption !== "eio") args.push(`--${o.corruption}-on-corruption`);
  if (o.hashOffset !== undefined) args.push(`--hash-offset=${o.hashOffset}`);
  if (!o.superblock) {
    args.push("--no-superblock", `--hash=${v.hashAlg}`, `--salt=${o.salt}`);
    if (o.format !== undefined) args.push(`--format=${o.format}`);
    if (o.dataBlockSize !== undefined) args.push(`--data-block-size=${o.dataBlockSize}`);
    if (o.hashBlockSize !== undefined) args.push(`--hash-block-size=${o.hashBlockSize}`);
    if (o.dataBlocks !== undefined) args.push(`--data-blocks=${o.dataBlocks}`);
  }
  return args;
}

function devno(p: string): string {
  const st = fs.statSync(p);
  if (!st.isBlockDevice()) throw new CvmError("volume", `${p} is not a block device`);
  return devnoOf(st.rdev);
}

interface Tools {
  veritysetup: string;
  dmsetup: string;
}

async function liveTable(ctx: RunContext, tools: Tools, name: string): Promise<string> {
  const r = await runCryptsetup(tools.dmsetup, ["table", name], undefined, ctx.deadline, "reading the dm table of");
  if (r.code !== 0)
    throw new CvmError("volume", `dmsetup table ${name} failed (exit ${r.code}: ${r.stderr.slice(0, 200)})`);
  return r.stdout;
}

/** The mapping must be exactly the volume the KBS described; otherwise close it (when we opened it) and refuse. */
async function checkLive(
  ctx: RunContext,
  tools: Tools,
  v: VerityVolume,
  devices: { data: string; hash: string },
  weOpened: boolean,
): Promise<void> {
  let problem: string | undefined;
  try {
    const t = parseDmVerityTable(await liveTable(ctx, tools, v.name));
    problem =
      typeof t === "string" ? t : verityTableProblem(t, v, { data: devno(devices.data), hash: devno(devices.hash) });
  } catch (e) {
    problem = `cannot read back the table: ${errorMessage(e)}`;
  }
  if (problem === undefined) return;
  let closed = "left alone (not opened by us)";
  if (weOpened)
    closed = await runCryptsetup(tools.veritysetup, ["close", v.name], undefined, ctx.deadline, "closing").then(
      (r) => (r.code === 0 ? "closed" : `veritysetup close failed (exit ${r.code})`),
      (e: unknown) => `veritysetup close failed (${errorMessage(e)})`,
    );
  throw new CvmError(
    "volume",
    `verity volume ${v.name}: the live dm-verity table differs: ${problem}; mapping ${closed}: refusing`,
    {
      hint: "something other than cvm-unlock set up this mapping, or the hash device's superblock disagrees with the KBS's resource",
    },
  );
}

/** Exactly `size` bytes at `offset` of a device (or image file). */
function readAt(file: string, offset: number, size: number): Uint8Array {
  const fd = fs.openSync(file, "r");
  try {
    const b = Buffer.alloc(size);
    const n = fs.readSync(fd, b, 0, size, offset);
    if (n !== size) throw new CvmError("volume", `${file}: short read (${n} of ${size} bytes at offset ${offset})`);
    return b;
  } finally {
    fs.closeSync(fd);
  }
}

/**
 * The released root hash must be the hash of the top block of the hash tree on the hash device
 * (superblock.ts): veritysetup itself would create a mapping for a wrong hash and let reads fail later.
 */
export function checkRootBlock(v: VerityVolume, devices: { data: string; hash: string }): void {
  const hashOffset = v.options.hashOffset ?? 0;
  const sb = v.options.superblock ? parseVeritySuperblock(readAt(devices.hash, hashOffset, VERITY_SB_SIZE)) : undefined;
  const p = effectiveParams(v, sb);
  if (typeof p === "string") throw new CvmError("volume", `verity volume ${v.name}: ${devices.hash}: ${p}: refusing`);
  const loc = rootBlockLocation(p, hashOffset, v.options.superblock);
  const block = readAt(loc.device === "hash" ? devices.hash : devices.data, loc.offset, loc.size);
  if (blockDigest(p, block) !== v.roothash)
    throw new CvmError(
      "volume",
      `verity volume ${v.name}: the root hash the KBS released is not the hash of the hash tree on ${devices.hash}: refusing`,
      {
        hint: "the disk holds another image than the one whose hash the KBS serves, or its hash partition was replaced",
      },
    );
}

function mappingExists(root: string, name: string): boolean {
  return fs.existsSync(path.join(root, "dev/mapper", name));
}

/** `veritysetup ACTION ...`; a failure names the volume and what it means. */
async function veritysetup(
  ctx: RunContext,
  tools: Tools,
  v: VerityVolume,
  args: string[],
  hint: string,
): Promise<void> {
  const r = await runCryptsetup(tools.veritysetup, args, undefined, ctx.deadline, `veritysetup ${args[0]}`);
  if (r.code !== 0)
    throw new CvmError(
      "volume",
      `verity volume ${v.name}: veritysetup ${args[0]} failed (exit ${r.code}): ${r.stderr.slice(-300)}`,
      { hint },
    );
}

async function openOne(
  ctx: RunContext,
  tools: Tools,
  v: VerityVolume,
  devices: { data: string; hash: string },
  testOnly: boolean,
): Promise<VerityOutcome["status"]> {
  checkRootBlock(v, devices);
  const options = veritysetupOptions(v);
  if (testOnly) {
    // user space check of every block against the released hash: no device-mapper needed
    const args = [
      "verify",
      devices.data,
      devices.hash,
      v.roothash,
      ...options.filter((a) => !a.endsWith("-on-corruption")),
    ];
    await veritysetup(ctx, tools, v, args, "the data or hash partition does not match the root hash the KBS released");
    return "verified";
  }
  if (mappingExists(ctx.env.paths.root, v.name)) {
    await checkLive(ctx, tools, v, devices, false);
    return "already-open";
  }
  const args = ["open", devices.data, v.name, devices.hash, v.roothash, ...options];
  await veritysetup(
    ctx,
    tools,
    v,
    args,
    "the hash partition does not match the root hash the KBS released (wrong image, or a tampered disk)",
  );
  await checkLive(ctx, tools, v, devices, true);
  return "opened";
}

/** The configured signer certificates, read before any KBS contact (a config error is not a KBS failure). */
function loadSigners(verity: VerityConfig): ReturnType<typeof signerCertificates> | undefined {
  const file = verity.signer_cert;
  if (file === undefined) return undefined;
  const pem = fileText(
    readFileBounded(file, { what: "verity.signer_cert", max: MAX_SIGNER_PEM, kind: "config", regularFile: true }),
  );
  return signerCertificates(pem, `verity.signer_cert ${file}`);
}

/** `config --check`: what openVerityVolumes reads from the configuration before the boot needs it. */
export function checkVerityConfig(verity: VerityConfig): void {
  loadSigners(verity);
}

/**
 * Fetch the verity resource through `session` and open every volume it lists. Run before the LUKS2
 * volumes of unlock.volumes (which share the session): their names must differ from these.
 */
export async function openVerityVolumes(
  ctx: RunContext,
  session: AttestedSession,
  timeline: Timeline,
  opts: { testOnly: boolean; measure: boolean; luksNames: string[] },
): Promise<VerityOutcome[]> {
  const cfg = ctx.config.verity;
  if (!cfg) return [];
  const root = ctx.env.paths.root;
  refuseVerityCmdline(root);
  requireGptAutoMasked(root);
  const signers = loadSigners(cfg);
  const tools: Tools = {
    veritysetup: findCryptsetup(cfg.veritysetup, "veritysetup"),
    dmsetup: opts.testOnly ? "" : findCryptsetup(ctx.config.unlock.dmsetup, "dmsetup"),
  };
  const { secret } = await session.fetch(cfg.resource);
  let volumes: VerityVolume[];
  try {
    volumes = parseVerityResource(secret); // bounded: at most MAX_VERITY_RESOURCE_BYTES
  } finally {
    secret.fill(0); // not secret, but the caller owns released buffers and zeroes them
  }
  for (const v of volumes) {
    if (opts.luksNames.includes(v.name))
      throw new CvmError("config", `verity volume ${v.name} has the name of a LUKS2 volume in unlock.volumes`, {
        hint: "name the LUKS2 volumes differently (e.g. var)",
      });
    // before any device is touched: the owner's signature over exactly this hash
    if (signers) checkRootHashSignature(v.name, v.roothash, v.signature, signers);
  }
  const outcomes: VerityOutcome[] = [];
  const opened: OpenedVerity[] = [];
  for (const v of volumes) {
    const find = (r: DeviceRef) =>
      waitUntilFound(
        () => findRef(r, v, root),
        `verity volume ${v.name}: ${describeRef(r, v)}`,
        cfg.device_timeout_s,
        ctx.deadline,
        ctx.log,
      );
    const devices = await timeline.time("device", async () => ({ data: await find(v.data), hash: await find(v.hash) }));
    if (devices.data === devices.hash && v.options.hashOffset === undefined)
      throw new CvmError(
        "volume",
        `verity volume ${v.name}: data and hash resolve to the same device ${devices.data} without hash-offset`,
      );
    ctx.log.info(`verity volume ${v.name}: data ${devices.data}, hash ${devices.hash}, root hash ${v.roothash}`);
    const status = await timeline.time("unlock", () => openOne(ctx, tools, v, devices, opts.testOnly));
    outcomes.push({ name: v.name, roothash: v.roothash, ...devices, status });
    if (status !== "verified") {
      opened.push({ name: v.name, roothash: v.roothash });
      // before measuring: verify-root must know the hash even if the measurement fails
      writeVerityState(verityStatePath(ctx.config), opened);
    }
    if (!opts.testOnly || opts.measure) {
      const m = ctx.config.unlock.measure;
      await timeline.time("measure", () =>
        measureEvent(
          m,
          { root, tpmSpec: ctx.config.platform.tpm, deadline: ctx.deadline, log: ctx.log },
          "verity",
          verityEvent(v.name, v.roothash),
          status,
        ),
      );
    }
  }
  return outcomes;
}
