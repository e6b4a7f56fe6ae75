// Mode B's key hand-off: systemd-cryptsetup connects to the key socket named as key file in
// crypttab, from a client socket bound to the abstract address "\0<random hex>/cryptsetup/<volume>"
// (systemd ≥ 248, src/cryptsetup/cryptsetup.c make_bindname; docs/spec/boot.md §1.1), and
// reads the key until EOF. Each volume gets its own key, once: a peer that names no volume we
// serve, is not root, or asks a second time gets nothing (its systemd-cryptsetup then fails, and
// with headless=true never falls back to a prompt). The caller zeroes the keys after this returns.
import type { Deadline } from "../../platform/util/deadline.ts";
import { CvmError } from "../../platform/util/errors.ts";
import type { Logger } from "../../platform/util/log.ts";
import type { UnixConnection, UnixListener } from "./unix-socket.ts";

/** Longest single wait in accept(): the deadline is re-checked at least this often. */
const POLL_SLICE_MS = 500;
const SEND_TIMEOUT_MS = 5000;
const PEER_NAME = /^[0-9a-f]{1,16}\/cryptsetup\/([^\0/]{1,255})$/;

/** The volume a key-socket peer asks for, or undefined when its address is not systemd-cryptsetup's form. */
export function volumeOfPeer(address: Uint8Array): string | undefined {
  if (address.length < 2 || address[0] !== 0) return undefined; // unnamed or a filesystem path
  let name: string;
  try {
    name = new TextDecoder("utf-8", { fatal: true }).decode(address.subarray(1));
  } catch {
    return undefined;
  }
  return PEER_NAME.exec(name)?.[1];
}

function describePeer(address: Uint8Array): string {
  if (address.length === 0) return "an unnamed socket";
  const text = Buffer.from(address.subarray(0, 128))
    .toString("latin1")
    .replace(/[^\x20-\x7e]/g, "?");
  return address[0] === 0 ? `abstract address ${JSON.stringify(text.slice(1))}` : `path ${JSON.stringify(text)}`;
}

/** Why a connection gets no key (undefined: serve it). */
function refusal(
  conn: UnixConnection,
  volume: string | undefined,
  keys: Map<string, Uint8Array>,
  served: Set<string>,
): string | undefined {
  if (conn.peerUid !== 0) return `the peer runs as uid ${conn.peerUid}, not root (systemd-cryptsetup)`;
  if (volume === undefined) return 'its address is not systemd-cryptsetup\'s "\\0<random>/cryptsetup/<volume>"';
  if (!keys.has(volume)) return `volume ${JSON.stringify(volume)} is not one this key socket serves`;
  if (served.has(volume)) return `volume ${volume} was already served (a second connection for it)`;
  return undefined;
}

/**
 * Serve each volume in `keys` its key once, until all were served or the deadline; then refuse
 * further connections. Throws a `deadline` error naming the volumes that never asked.
 */
export async function serveKeys(
  listener: UnixListener,
  keys: Map<string, Uint8Array>,
  deadline: Deadline,
  log: Logger,
): Promise<string[]> {
  const served = new Set<string>();
  try {
    while (served.size < keys.size) {
      const left = deadline.remainingMs();
      if (left <= 0) break;
      const conn = listener.accept(Math.min(left, POLL_SLICE_MS));
      // Let the event loop run between waits (signal handlers, timers).
      await new Promise((resolve) => setImmediate(resolve));
      if (!conn) continue;
      try {
        const volume = volumeOfPeer(conn.peerAddress);
        const why = refusal(conn, volume, keys, served);
        if (why !== undefined) {
          log.warning(`key socket: refusing a connection from ${describePeer(conn.peerAddress)}: ${why}`);
          continue;
        }
        conn.send(keys.get(volume!)!, Math.min(SEND_TIMEOUT_MS, Math.max(1, deadline.remainingMs())));
        served.add(volume!);
        log.notice(`key socket: served the key of volume ${volume}`);
      } catch (e) {
        log.warning(`key socket: a connection failed: ${e instanceof Error ? e.message : String(e)}`);
      } finally {
        conn.close();
      }
    }
  } finally {
    listener.close();
  }
  const missing = [...keys.keys()].filter((v) => !served.has(v));
  if (missing.length > 0)
    throw new CvmError(
      "deadline",
      `deadline of ${deadline.totalMs / 1000}s reached before systemd-cryptsetup asked for ${missing.join(", ")}`,
      {
        hint: "check that crypttab names these volumes with the key socket and that their devices appeared (journalctl -u systemd-cryptsetup@NAME)",
      },
    );
  return [...served];
}
