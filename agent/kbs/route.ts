// Waiting for the network without asking how it comes up: the agent starts before DHCP is done
// (docs/UNLOCK.md "Boot ordering"), so before the first KBS attempt it polls the kernel's routing
// tables (/proc/net/route, /proc/net/ipv6_route) until one endpoint has a usable route, whoever
// configures it (systemd-networkd, NetworkManager, a static .network). Then the TLS handshake
// starts at once instead of after a backoff. The wait is bounded by the run's deadline. A route is
// not a security decision (TLS checks the KBS): a garbled table only means waiting or trying.
import * as fs from "node:fs";
import { isIP } from "node:net";
import * as os from "node:os";
import * as path from "node:path";
import type { Deadline } from "../../platform/util/deadline.ts";
import { CvmError } from "../../platform/util/errors.ts";
import type { Logger } from "../../platform/util/log.ts";

/** More than any real table in an initramfs; a bigger file is read up to this size. */
export const MAX_ROUTE_TABLE_BYTES = 256 * 1024;
/** How often the tables are read while waiting. */
export const ROUTE_POLL_MS = 50;

const RTF_UP = 0x1;
const RTF_REJECT = 0x200;

export interface Route {
  family: 4 | 6;
  /** Destination network, 4 or 16 bytes (network byte order). */
  dest: Uint8Array;
  prefixLen: number;
  iface: string;
}

const IFACE = /^[^\s/]{1,15}$/;
/** The interface /proc/net/route prints for a route without a device: blackhole, unreachable, prohibit. */
const NO_DEVICE = "*";

function hexBytes(s: string, n: number): Uint8Array | undefined {
  if (s.length !== n * 2 || !/^[0-9A-Fa-f]+$/.test(s)) return undefined;
  return Uint8Array.from(Buffer.from(s, "hex"));
}

function usable(flags: number, iface: string): boolean {
  // an IPv4 blackhole route has RTF_UP and no RTF_REJECT (fib_flag_trans), only the missing device says it drops
  return (flags & RTF_UP) !== 0 && (flags & RTF_REJECT) === 0 && IFACE.test(iface) && iface !== NO_DEVICE;
}

/**
 * /proc/net/route (main IPv4 table). Destination and Mask are the __be32 printed as a host-order
 * number ("%08X"), so on a little-endian machine 10.0.2.0 reads "0002000A". Lines that do not
 * parse are skipped; only the first `maxLines` are looked at.
 */
export function parseIpv4Routes(text: string, littleEndian = os.endianness() === "LE", maxLines = 4096): Route[] {
  const routes: Route[] = [];
  for (const line of text.split("\n", maxLines + 1).slice(1, maxLines + 1)) {
    const f = line.trim().split(/\s+/);
    if (f.length < 8) continue;
    const [iface, destHex, , flagsHex, , , , maskHex] = f as [string, string, string, string, ...string[]];
    const dest = hexBytes(destHex, 4);
    const mask = hexBytes(maskHex!, 4);
    if (!dest || !mask || !/^[0-9A-Fa-f]{1,8}$/.test(flagsHex)) continue;
    if (littleEndian) (dest.reverse(), mask.reverse());
    const prefixLen = contiguousPrefix(mask);
    if (prefixLen === undefined || !usable(parseInt(flagsHex, 16), iface)) continue;
    routes.push({ family: 4, dest, prefixLen, iface });
  }
  return routes;
}

/** /proc/net/ipv6_route: dest plen src splen nexthop metric refcnt use flags iface (all tables). */
export function parseIpv6Routes(text: string, maxLines = 4096): Route[] {
  const routes: Route[] = [];
  for (const line of text.split("\n", maxLines)) {
    const f = line.trim().split(/\s+/);
    if (f.length !== 10) continue;
    const dest = hexBytes(f[0]!, 16);
    const plen = /^[0-9A-Fa-f]{2}$/.test(f[1]!) ? parseInt(f[1]!, 16) : NaN;
    if (!dest || !(plen <= 128) || !/^[0-9A-Fa-f]{8}$/.test(f[8]!)) continue;
    if (!usable(parseInt(f[8]!, 16), f[9]!)) continue;
    routes.push({ family: 6, dest, prefixLen: plen, iface: f[9]! });
  }
  return routes;
}

/** Number of leading one bits of a netmask, or undefined when the ones are not contiguous. */
function contiguousPrefix(mask: Uint8Array): number | undefined {
  let bits = 0;
  let ended = false;
  for (const byte of mask)
    for (let b = 7; b >= 0; b--) {
      const one = ((byte >> b) & 1) === 1;
      if (one && ended) return undefined;
      if (one) bits++;
      else ended = true;
    }
  return bits;
}

function inPrefix(addr: Uint8Array, r: Route): boolean {
  if (addr.length !== r.dest.length) return false;
  for (let bit = 0; bit < r.prefixLen; bit++) {
    const i = bit >> 3;
    const m = 0x80 >> (bit & 7);
    if ((addr[i]! & m) !== (r.dest[i]! & m)) return false;
  }
  return true;
}

/** Parsed address bytes of an IP literal (URL hostnames keep IPv6 in brackets). */
export function ipBytes(host: string): Uint8Array | undefined {
  const h = host.startsWith("[") && host.endsWith("]") ? host.slice(1, -1) : host;
  const v = isIP(h);
  if (v === 4) return Uint8Array.from(h.split(".").map(Number));
  if (v !== 6) return undefined;
  const [head, tail = ""] = h.includes("::") ? h.split("::") : [h, undefined];
  const words = (s: string | undefined) => (s ? s.split(":") : []);
  let hw = words(head);
  let tw = words(tail);
  // an embedded IPv4 tail (::ffff:1.2.3.4) is two words
  const v4 = (w: string[]) => {
    const last = w[w.length - 1];
    if (last?.includes(".")) {
      const b = last.split(".").map(Number);
      w.splice(-1, 1, ((b[0]! << 8) | b[1]!).toString(16), ((b[2]! << 8) | b[3]!).toString(16));
    }
    return w;
  };
  if (h.includes("::")) tw = v4(tw);
  else hw = v4(hw);
  const all = h.includes("::") ? [...hw, ...Array(8 - hw.length - tw.length).fill("0"), ...tw] : hw;
  const out = new Uint8Array(16);
  all.forEach((w, i) => ((out[2 * i] = parseInt(w, 16) >> 8), (out[2 * i + 1] = parseInt(w, 16) & 0xff)));
  return out;
}

/** Loopback needs no configured network (the local table is not in /proc/net/route). */
function isLoopback(host: string, addr: Uint8Array | undefined): boolean {
  if (!addr) return host === "localhost" || host.endsWith(".localhost");
  if (addr.length === 4) return addr[0] === 127;
  return addr.every((b, i) => b === (i === 15 ? 1 : 0));
}

/** A host name needs an address on some interface: an IPv4 route, or IPv6 beyond link-local/multicast. */
function givesAddress(r: Route): boolean {
  if (r.iface === "lo") return false;
  if (r.family === 4) return true;
  return !(r.dest[0] === 0xff || (r.dest[0] === 0xfe && (r.dest[1]! & 0xc0) === 0x80));
}

/** Whether `host` (URL hostname) can be reached with these routes. */
export function hasRoute(host: string, routes: Route[]): boolean {
  const addr = ipBytes(host);
  if (isLoopback(host, addr)) return true;
  if (!addr) return routes.some(givesAddress);
  return routes.some((r) => r.iface !== "lo" && inPrefix(addr, r));
}

function readHead(file: string): string | undefined {
  let fd: number;
  try {
    fd = fs.openSync(file, "r");
  } catch {
    return undefined;
  }
  try {
    const buf = Buffer.alloc(MAX_ROUTE_TABLE_BYTES);
    let n = 0;
    for (let r; n < buf.length && (r = fs.readSync(fd, buf, n, buf.length - n, null)) > 0;) n += r;
    return buf.subarray(0, n).toString("latin1");
  } catch {
    return undefined;
  } finally {
    fs.closeSync(fd);
  }
}

/**
 * Whether name lookups have a server: /etc/resolv.conf lists one (written by systemd-resolved's
 * stub, by cvm-unlock-resolv from systemd-networkd's or NetworkManager's state once online).
 */
export function resolverConfigured(root: string): boolean {
  return /^\s*nameserver\s+\S/m.test(readHead(path.join(root, "etc/resolv.conf")) ?? "");
}

/** The routes the kernel has now, or undefined when neither table can be read (no /proc: cannot tell). */
export function readRoutes(root: string): Route[] | undefined {
  const v4 = readHead(path.join(root, "proc/net/route"));
  const v6 = readHead(path.join(root, "proc/net/ipv6_route"));
  if (v4 === undefined && v6 === undefined) return undefined;
  return [...(v4 ? parseIpv4Routes(v4) : []), ...(v6 ? parseIpv6Routes(v6) : [])];
}

/** lo is up (IFF_UP in /sys/class/net/lo/flags); unreadable = assumed up (systemd raises it first thing). */
export function loopbackUp(root: string): boolean {
  const flags = readHead(path.join(root, "sys/class/net/lo/flags"))?.trim();
  return flags === undefined || !/^0x[0-9a-fA-F]{1,8}$/.test(flags) || (parseInt(flags, 16) & 0x1) === 1;
}

/** One endpoint host can be tried now: a route to it, and for a host name also a resolver. */
function reachable(host: string, routes: Route[], root: string): boolean {
  if (!hasRoute(host, routes)) return false;
  if (isLoopback(host, ipBytes(host))) return loopbackUp(root);
  return ipBytes(host) !== undefined || resolverConfigured(root);
}

/**
 * Wait until one of `endpoints` (URLs) has a route (and, for a host name, a resolver), polling
 * every `pollMs`, within the deadline. Returns at once when the routing tables cannot be read
 * (no /proc: the connection attempts decide).
 */
export async function waitForRoute(
  endpoints: string[],
  root: string,
  deadline: Deadline,
  log: Logger,
  pollMs = ROUTE_POLL_MS,
): Promise<void> {
  const hosts = endpoints.map((e) => new URL(e).hostname);
  let logged = false;
  const t0 = performance.now();
  for (;;) {
    const routes = readRoutes(root);
    if (routes === undefined || hosts.some((h) => reachable(h, routes, root))) {
      if (logged) log.info(`kbs: network route after ${Math.round(performance.now() - t0)} ms`);
      return;
    }
    if (!logged) {
      log.info(`kbs: waiting for a network route to ${hosts.join(", ")}`);
      logged = true;
    }
    try {
      await deadline.sleep(pollMs, `waiting for a network route to KBS ${hosts.join(", ")}`);
    } catch (e) {
      throw new CvmError(
        "deadline",
        `${e instanceof Error ? e.message : String(e)}: no usable route in /proc/net/route or /proc/net/ipv6_route` +
          (hosts.some((h) => ipBytes(h) === undefined) ? " (or no nameserver in /etc/resolv.conf)" : ""),
        {
          hint: "the guest network did not come up: check that the initramfs configures the NIC (systemd-networkd or NetworkManager, DHCP), or raise deadline_s",
          cause: e,
        },
      );
    }
  }
}
