// Waiting for a route to the KBS (agent/kbs/route.ts): parsing the kernel's routing tables,
// including tables a stand-in /proc (or a broken kernel) fills with garbage, and the bounded wait.
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { Deadline } from "../../../platform/util/deadline.ts";
import { CvmError } from "../../../platform/util/errors.ts";
import { silentLogger } from "../../../platform/util/log.ts";
import {
  hasRoute,
  ipBytes,
  MAX_ROUTE_TABLE_BYTES,
  parseIpv4Routes,
  parseIpv6Routes,
  readRoutes,
  waitForRoute,
} from "../../../agent/kbs/route.ts";

const V4_HEADER = "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n";
// QEMU user networking after DHCP, as a little-endian kernel prints it
const V4_DHCP =
  V4_HEADER +
  "enp0s2\t00000000\t0202000A\t0003\t0\t0\t1024\t00000000\t0\t0\t0\n" +
  "enp0s2\t0002000A\t00000000\t0001\t0\t0\t1024\t00FFFFFF\t0\t0\t0\n";
const V4_SUBNET_ONLY = V4_HEADER + "enp0s2\t0002000A\t00000000\t0001\t0\t0\t1024\t00FFFFFF\t0\t0\t0\n";
// link up, IPv6 link-local + multicast only, and the kernel's reject default route on lo
const V6_LINK_ONLY =
  "fe800000000000000000000000000000 40 00000000000000000000000000000000 00 00000000000000000000000000000000 00000100 00000001 00000000 00000001   enp0s2\n" +
  "ff000000000000000000000000000000 08 00000000000000000000000000000000 00 00000000000000000000000000000000 00000100 00000001 00000000 00000001   enp0s2\n" +
  "00000000000000000000000000000000 00 00000000000000000000000000000000 00 00000000000000000000000000000000 ffffffff 00000001 00000000 00200200       lo\n";
const V6_DEFAULT =
  "00000000000000000000000000000000 00 00000000000000000000000000000000 00 fd000000000000000000000000000001 00000400 00000002 00000000 00000003   enp0s2\n";

describe("parseIpv4Routes", () => {
  it("reads destination and mask in host byte order (little-endian kernel)", () => {
    const r = parseIpv4Routes(V4_DHCP, true);
    expect(r.map((x) => [Array.from(x.dest).join("."), x.prefixLen, x.iface])).toEqual([
      ["0.0.0.0", 0, "enp0s2"],
      ["10.0.2.0", 24, "enp0s2"],
    ]);
  });

  it("reads a big-endian kernel's table too", () => {
    const r = parseIpv4Routes(V4_HEADER + "eth0\t0A000200\t00000000\t0001\t0\t0\t0\tFFFFFF00\t0\t0\t0\n", false);
    expect(Array.from(r[0]!.dest)).toEqual([10, 0, 2, 0]);
    expect(r[0]!.prefixLen).toBe(24);
  });

  it("drops routes that are down or reject, and masks that are not a prefix", () => {
    const t =
      V4_HEADER +
      "eth0\t00000000\t0202000A\t0002\t0\t0\t0\t00000000\t0\t0\t0\n" + // not RTF_UP
      "eth0\t00000000\t00000000\t0201\t0\t0\t0\t00000000\t0\t0\t0\n" + // RTF_REJECT
      "eth0\t0002000A\t00000000\t0001\t0\t0\t0\t00FF00FF\t0\t0\t0\n"; // holes in the mask
    expect(parseIpv4Routes(t, true)).toEqual([]);
  });

  it("drops a blackhole default route (RTF_UP without RTF_REJECT, no device: '*')", () => {
    // `ip route add blackhole default` as a little-endian kernel prints it
    const t = V4_HEADER + "*\t00000000\t00000000\t0001\t0\t0\t0\t00000000\t0\t0\t0\n";
    expect(parseIpv4Routes(t, true)).toEqual([]);
    expect(hasRoute("192.0.2.1", parseIpv4Routes(t, true))).toBe(false);
    expect(hasRoute("kbs.example", parseIpv4Routes(t, true))).toBe(false);
  });

  it("skips hostile lines: garbage, NULs, overlong fields, bad interface names, no header", () => {
    const t =
      "\0\0\0garbage\n" + // taken as the header line
      "eth0\tZZZZZZZZ\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n" +
      "eth0\t0002000A0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n" +
      "eth0\t0002000A\t00000000\t000000001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n" +
      "../../x\t0002000A\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n" +
      `${"i".repeat(64)}\t0002000A\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n` +
      "eth0\t0002000A\n" +
      "\n\n\t\t\n" +
      "eth0\t0002000A\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n"; // the one good line
    const r = parseIpv4Routes(t, true);
    expect(r).toHaveLength(1);
    expect(r[0]!.iface).toBe("eth0");
  });

  it("looks at a bounded number of lines", () => {
    const line = "eth0\t0002000A\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n";
    expect(parseIpv4Routes(V4_HEADER + line.repeat(10), true, 3)).toHaveLength(3);
  });
});

describe("parseIpv6Routes", () => {
  it("keeps usable routes and drops the kernel's reject routes", () => {
    const r = parseIpv6Routes(V6_LINK_ONLY + V6_DEFAULT);
    expect(r.map((x) => [x.prefixLen, x.iface])).toEqual([
      [64, "enp0s2"],
      [8, "enp0s2"],
      [0, "enp0s2"],
    ]);
  });

  it("skips lines with a bad prefix length, short hex or extra fields", () => {
    const t =
      "fe800000000000000000000000000000 ff 00000000000000000000000000000000 00 00000000000000000000000000000000 00000100 00000001 00000000 00000001 eth0\n" +
      "fe80 40 00000000000000000000000000000000 00 00000000000000000000000000000000 00000100 00000001 00000000 00000001 eth0\n" +
      "fe800000000000000000000000000000 40 00000000000000000000000000000000 00 00000000000000000000000000000000 00000100 00000001 00000000 00000001 eth0 extra\n" +
      "fe800000000000000000000000000000 40 00000000000000000000000000000000 00 00000000000000000000000000000000 00000100 00000001 00000000 0000000G eth0\n";
    expect(parseIpv6Routes(t)).toEqual([]);
  });
});

describe("ipBytes", () => {
  it("parses IPv4, bracketed IPv6 with :: and an embedded IPv4 tail; not host names", () => {
    expect(Array.from(ipBytes("10.0.2.2")!)).toEqual([10, 0, 2, 2]);
    expect(Buffer.from(ipBytes("[fd00::1]")!).toString("hex")).toBe("fd000000000000000000000000000001");
    expect(Buffer.from(ipBytes("[2001:db8:0:0:1:2:3:4]")!).toString("hex")).toBe("20010db8000000000001000200030004");
    expect(Buffer.from(ipBytes("[::ffff:10.0.2.2]")!).toString("hex")).toBe("00000000000000000000ffff0a000202");
    expect(ipBytes("kbs.example")).toBeUndefined();
    expect(ipBytes("10.0.2.256")).toBeUndefined();
  });
});

describe("hasRoute", () => {
  const v4 = parseIpv4Routes(V4_DHCP, true);
  const subnet = parseIpv4Routes(V4_SUBNET_ONLY, true);
  const linkOnly = parseIpv6Routes(V6_LINK_ONLY);

  it("an IP literal needs a route whose prefix holds it", () => {
    expect(hasRoute("10.0.2.2", subnet)).toBe(true);
    expect(hasRoute("192.0.2.1", subnet)).toBe(false);
    expect(hasRoute("192.0.2.1", v4)).toBe(true); // default route
    expect(hasRoute("[fd00::1]", linkOnly)).toBe(false); // the reject default on lo does not count
    expect(hasRoute("[fd00::1]", parseIpv6Routes(V6_DEFAULT))).toBe(true);
    expect(hasRoute("[fe80::2]", linkOnly)).toBe(true);
  });

  it("before any network, only loopback is reachable", () => {
    expect(hasRoute("127.0.0.1", [])).toBe(true);
    expect(hasRoute("[::1]", [])).toBe(true);
    expect(hasRoute("localhost", [])).toBe(true);
    expect(hasRoute("10.0.2.2", [])).toBe(false);
    expect(hasRoute("kbs.example", [])).toBe(false);
  });

  it("a host name needs an address: IPv6 link-local and multicast routes do not count", () => {
    expect(hasRoute("kbs.example", linkOnly)).toBe(false);
    expect(hasRoute("kbs.example", subnet)).toBe(true);
    expect(hasRoute("kbs.example", parseIpv6Routes(V6_DEFAULT))).toBe(true);
  });

  it("routes on lo do not reach other hosts", () => {
    const lo = parseIpv4Routes(V4_HEADER + "lo\t00000000\t00000000\t0001\t0\t0\t0\t00000000\t0\t0\t0\n", true);
    expect(hasRoute("10.0.2.2", lo)).toBe(false);
    expect(hasRoute("kbs.example", lo)).toBe(false);
  });
});

describe("readRoutes / waitForRoute on a stand-in /proc", () => {
  let root: string;
  const write = (rel: string, text: string | Buffer) => {
    fs.mkdirSync(path.dirname(path.join(root, rel)), { recursive: true });
    fs.writeFileSync(path.join(root, rel), text);
  };
  beforeEach(() => {
    root = fs.mkdtempSync(path.join(os.tmpdir(), "route-"));
  });
  afterEach(() => fs.rmSync(root, { recursive: true, force: true }));

  it("no tables at all: cannot tell, so no wait", async () => {
    expect(readRoutes(root)).toBeUndefined();
    const d = new Deadline(1000);
    await waitForRoute(["https://10.0.2.2:8080"], root, d, silentLogger, 5);
    d.dispose();
  });

  it("reads a bounded prefix of an endless table", () => {
    const line = "eth0\t0002000A\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n";
    write("proc/net/route", V4_HEADER + line.repeat(Math.ceil((4 * MAX_ROUTE_TABLE_BYTES) / line.length)));
    const r = readRoutes(root)!;
    expect(r.length).toBeGreaterThan(0);
    expect(r.length).toBeLessThanOrEqual(4096);
  });

  it("returns once the route appears", async () => {
    write("proc/net/route", V4_HEADER);
    const d = new Deadline(5000);
    setTimeout(() => write("proc/net/route", V4_DHCP), 100);
    const t0 = Date.now();
    await waitForRoute(["https://10.0.2.2:8080"], root, d, silentLogger, 10);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(90);
    d.dispose();
  });

  it("a host name also waits for a nameserver in /etc/resolv.conf", async () => {
    write("proc/net/route", V4_DHCP);
    write("etc/resolv.conf", "# nothing yet\n");
    const d = new Deadline(5000);
    let done = false;
    const p = waitForRoute(["https://kbs.example"], root, d, silentLogger, 10).then(() => (done = true));
    await new Promise((r) => setTimeout(r, 80));
    expect(done).toBe(false);
    write("etc/resolv.conf", "nameserver 10.0.2.3\n");
    await p;
    d.dispose();
  });

  it("fails closed at the deadline, naming the KBS host and the tables", async () => {
    write("proc/net/route", V4_HEADER);
    write("proc/net/ipv6_route", V6_LINK_ONLY);
    const d = new Deadline(150);
    const e = await waitForRoute(["https://10.0.2.2:8080"], root, d, silentLogger, 10).then(
      () => undefined,
      (x: unknown) => x,
    );
    d.dispose();
    expect(e).toBeInstanceOf(CvmError);
    expect((e as CvmError).kind).toBe("deadline");
    expect((e as CvmError).message).toMatch(/waiting for a network route to KBS 10\.0\.2\.2.*\/proc\/net\/route/);
    expect((e as CvmError).hint).toMatch(/network did not come up/);
  });
});
