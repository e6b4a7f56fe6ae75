// `cvm-unlock serve-keys` (mode B, docs/UNLOCK.md "Mode B"): the volumes are the crypttab entries
// whose key file is the key socket; systemd-cryptsetup opens them. For each: find the device and
// check its header (the same checks as mode A), record the mapping that header implies (for
// `verify-mapping`), then attest ONCE and fetch every volume's key with the one token, check the
// key documents' pins, measure, and serve each volume its key on the socket (key-server.ts).
// Keys live in memory only and are zeroed once the server is done with them.
import { Deadline } from "../../platform/util/deadline.ts";
import { CvmError } from "../../platform/util/errors.ts";
import type { Logger } from "../../platform/util/log.ts";
import { openAttestedSession } from "../attest.ts";
import { platformEnv, type RunContext } from "../cli/common.ts";
import type { ConfigLoader } from "../config/load.ts";
import { volumeEvent } from "../measure/events.ts";
import { measureEvent } from "../measure/measure.ts";
import type { Timeline } from "../timeline.ts";
import { checkConfiguredVolumes, readSocketVolumes, socketVolumeConfig, type SocketVolume } from "./crypttab.ts";
import { checkPins, hasPins, parseKeyResource } from "./key-document.ts";
import { serveKeys } from "./key-server.ts";
import { expectedMapping } from "./live-table.ts";
import { mappingRecordPath, writeMappingRecord, type VerifiedVolume } from "./mapping-record.ts";
import type { UnixListener, UnixSockets } from "./unix-socket.ts";
import {
  checkVolume,
  loadUnlockConfig,
  recordOpened,
  volumeConfig,
  volumeResource,
  type CheckedVolume,
  type VolumeConfig,
} from "./unlock.ts";

export interface ServeRequest {
  root: string;
  loadConfig: ConfigLoader;
  log: Logger;
  crypttab: string;
  socket: string;
  /** undefined under node: the key server needs the compiled binary (bun:ffi). */
  sockets: UnixSockets | undefined;
  env: NodeJS.ProcessEnv;
  pid: number;
}

interface Prepared {
  sv: SocketVolume;
  vol: VolumeConfig;
  device: string;
  checked: CheckedVolume;
  resource: string;
  ctx: RunContext;
}

function openListener(req: ServeRequest): UnixListener {
  if (!req.sockets)
    throw new CvmError("platform", "serve-keys needs the compiled cvm-unlock (bun:ffi for the key socket)");
  const passed = req.sockets.fromSystemd(req.env, req.pid);
  if (passed) {
    req.log.info("key socket: using the socket systemd passed (LISTEN_FDS)");
    return passed;
  }
  req.log.info(`key socket: listening on ${req.socket}`);
  return req.sockets.listen(req.socket);
}

export async function serveVolumeKeys(req: ServeRequest, timeline: Timeline): Promise<string[]> {
  const { root, log } = req;
  const { loaded: base, hostLayers, initData } = await loadUnlockConfig(req.loadConfig, log, root);
  const socketVols = readSocketVolumes(req.crypttab, req.socket);
  checkConfiguredVolumes(base.config, socketVols, req.crypttab);
  // The socket first: a missing or unusable socket fails before any KBS contact.
  const listener = openListener(req);
  const deadline = new Deadline(base.config.deadline_s * 1000);
  const keys = new Map<string, Buffer>();
  const secrets: Buffer[] = [];
  try {
    const prepared: Prepared[] = [];
    for (const sv of socketVols) {
      const vol = socketVolumeConfig(sv, base.config);
      const { device, checked } = await checkVolume(vol, root, base.config, deadline, log, timeline);
      const loaded = volumeConfig(req, base, hostLayers, checked.volume.header, device);
      const ctx: RunContext = {
        loaded,
        config: loaded.config,
        deadline,
        env: platformEnv(loaded.config, root, deadline, log),
        log,
        initData,
      };
      prepared.push({ sv, vol, device, checked, resource: volumeResource(vol, loaded.config), ctx });
    }
    const first = prepared[0]!;
    // One attestation serves all volumes: a LUKS token may not send one of them to another KBS.
    for (const p of prepared)
      if (JSON.stringify(p.ctx.config.kbs) !== JSON.stringify(first.ctx.config.kbs))
        throw new CvmError(
          "config",
          `volume ${p.vol.name}: its LUKS2 token selects other KBS settings than volume ${first.vol.name}`,
          {
            hint: "mode B fetches all keys in one attestation session: every volume must use the same KBS",
          },
        );
    // What each mapping must look like, recorded before any key leaves this process.
    const verified: VerifiedVolume[] = prepared.map((p) => ({
      name: p.vol.name,
      uuid: p.checked.volume.header.uuid,
      device: p.device,
      mapping: expectedMapping(p.checked.verified, p.checked.volume),
      tableOptions: p.sv.tableOptions,
    }));
    writeMappingRecord(mappingRecordPath(base.config), verified);

    // One attested session: every volume's key under the one token.
    const session = openAttestedSession(first.ctx, timeline);
    let endpoint = "";
    try {
      for (const p of prepared) {
        const fetched = await session.fetch(p.resource);
        secrets.push(fetched.secret);
        endpoint = fetched.endpoint;
      }
    } finally {
      await session.close();
    }
    prepared.forEach((p, i) => {
      const doc = parseKeyResource(secrets[i]!);
      keys.set(p.vol.name, doc.key);
      if (p.ctx.config.unlock.require_pins && !hasPins(doc.pins))
        throw new CvmError(
          "volume",
          `the KBS resource ${p.resource} carries no volume pins, but unlock.require_pins is set: refusing`,
          {
            hint: "store a cvm-unlock key document with pins (docs/UNLOCK.md)",
          },
        );
      checkPins(doc.pins, p.checked.volume.header, p.device);
    });
    log.info(`key socket: ${prepared.length} key(s) from ${endpoint} in one attestation`);
    // verify-root accepts a root on these volumes (their dm uuid names the verified LUKS UUID).
    recordOpened(
      base.config,
      prepared.map((p) => ({
        name: p.vol.name,
        uuid: p.checked.volume.header.uuid,
        device: p.device,
        status: "served" as const,
      })),
    );
    for (const p of prepared)
      await timeline.time("measure", () =>
        measureEvent(
          p.ctx.config.unlock.measure,
          { root, tpmSpec: p.ctx.config.platform.tpm, deadline, log },
          "volume",
          volumeEvent(p.vol.name, p.checked.volume.header.uuid),
          "served",
        ),
      );
    return await timeline.time("unlock", () => serveKeys(listener, keys, deadline, log));
  } finally {
    listener.close();
    // Only now: the server has sent (or will never send) these bytes.
    for (const k of keys.values()) k.fill(0);
    for (const s of secrets) s.fill(0);
    deadline.dispose();
  }
}
