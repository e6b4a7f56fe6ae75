// The compiled agent started before the network is up (the early boot unit): it waits for a route
// to the KBS (agent/kbs/route.ts) in a stand-in /proc and /sys (--platform-root), contacts the KBS
// only once one exists and then gets the key; without a network it fails closed at its deadline
// with a message naming the KBS and the routing tables. The test KBS listens on 127.0.0.1, so the
// "network" here is the loopback interface's IFF_UP flag in the stand-in sysfs.
import * as crypto from "node:crypto";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { EXIT_CODES } from "../../platform/util/errors.ts";
import { BINARY, ensureBinary, runCli } from "../helpers/binary.ts";
import { spawnSync } from "node:child_process";
import { createPki, type Pki } from "../helpers/pki.ts";
import { startTestKbs, type TestKbs } from "../kbs/server.ts";

const RESOURCE = "default/key/root";
const SECRET = crypto.randomBytes(32);
const ROUTE_HEADER = "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n";

let pki: Pki;
let work: string;
let kbs: TestKbs | undefined;

beforeAll(() => {
  ensureBinary();
  pki = createPki();
  work = fs.mkdtempSync(path.join(os.tmpdir(), "route-wait-it-"));
});
afterEach(async () => {
  await kbs?.close();
  kbs = undefined;
});
afterAll(() => {
  fs.rmSync(work, { recursive: true, force: true });
  fs.rmSync(pki.dir, { recursive: true, force: true });
});

/** A stand-in root as the initramfs has it before the network: empty routing tables, lo down. */
function offlineRoot(): { root: string; bringUp(): void } {
  const root = fs.mkdtempSync(path.join(work, "root-"));
  const put = (rel: string, text: string) => {
    fs.mkdirSync(path.dirname(path.join(root, rel)), { recursive: true });
    fs.writeFileSync(path.join(root, rel), text);
  };
  put("proc/cmdline", "console=ttyS0\n");
  put("proc/net/route", ROUTE_HEADER);
  put("proc/net/ipv6_route", "");
  put("sys/class/net/lo/flags", "0x8\n");
  return { root, bringUp: () => put("sys/class/net/lo/flags", "0x9\n") };
}

/** `fetch` from the stand-in root; `isolated`: to this KBS URL, inside an empty network namespace. */
function fetchCli(root: string, deadline: number, isolated?: string, tee = ["--tee", "sample", "--allow-sample"]) {
  return runCli(
    [
      ...(isolated ? ["-n", BINARY] : []),
      "fetch",
      RESOURCE,
      "--kbs",
      isolated ?? kbs!.url,
      "--ca",
      pki.caFile,
      ...tee,
      "--deadline",
      String(deadline),
      "--platform-root",
      root,
    ],
    { timeoutMs: 90_000, ...(isolated ? { binary: "unshare" } : {}) },
  );
}

describe("agent started before the network", () => {
  it("waits for a route, contacts the KBS only then, and gets the key", async () => {
    kbs = await startTestKbs({ tls: pki.tls, resources: { [RESOURCE]: SECRET } });
    const { root, bringUp } = offlineRoot();
    const run = fetchCli(root, 60);
    await new Promise((r) => setTimeout(r, 3000));
    // still waiting: not one request reached the KBS
    expect(kbs.stats.events).toEqual([]);
    bringUp();
    const r = await run;
    expect(r.code, r.stderr).toBe(0);
    expect(Buffer.compare(r.stdout, SECRET)).toBe(0);
    expect(r.stderr).toMatch(/kbs: waiting for a network route to 127\.0\.0\.1/);
    expect(r.stderr).toMatch(/kbs: network route after \d+ ms/);
    expect(kbs.stats.released).toBe(1);
  });

  it("no route before the deadline: fails closed, names the KBS and the tables, never contacts it", async () => {
    kbs = await startTestKbs({ tls: pki.tls, resources: { [RESOURCE]: SECRET } });
    const { root } = offlineRoot();
    const t0 = Date.now();
    const r = await fetchCli(root, 4);
    expect(r.timedOut).toBe(false);
    expect(r.code, r.stderr).toBe(EXIT_CODES.deadline);
    expect(r.stdout.length).toBe(0);
    expect(r.stderr).toMatch(
      /deadline of 4s exceeded while waiting for a network route to KBS 127\.0\.0\.1: no usable route in \/proc\/net\/route or \/proc\/net\/ipv6_route/,
    );
    expect(r.stderr).toMatch(/network did not come up/);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(3500);
    expect(kbs.stats.events).toEqual([]);
  });

  // The host fills the routing tables: a huge file of garbage, a default route that only drops
  // (blackhole, no device), a default route on lo, the kernel's IPv6 reject route. None of them
  // reaches the KBS: the agent waits (reading a bounded prefix each time) and stops at its deadline.
  // The KBS address is TEST-NET-1 and the binary runs in an empty network namespace, so even a
  // wrongly accepted route could reach nothing outside this machine.
  it.skipIf(spawnSync("unshare", ["-n", "true"]).status !== 0)(
    "hostile routing tables (huge, garbage, blackhole, default on lo): bounded wait, clear message at the deadline",
    async () => {
      const { root } = offlineRoot();
      const garbage = ("\0\xff junk " + "z".repeat(200) + "\n").repeat(100_000); // ~21 MB
      fs.writeFileSync(
        path.join(root, "proc/net/route"),
        ROUTE_HEADER +
          "*\t00000000\t00000000\t0001\t0\t0\t0\t00000000\t0\t0\t0\n" + // blackhole default
          "lo\t00000000\t00000000\t0001\t0\t0\t0\t00000000\t0\t0\t0\n" + // default via lo
          "*\t0200000C0\t00000000\t0201\t0\t0\t0\tFFFFFFFF\t0\t0\t0\n" + // unreachable, malformed
          garbage,
      );
      fs.writeFileSync(
        path.join(root, "proc/net/ipv6_route"),
        "00000000000000000000000000000000 00 00000000000000000000000000000000 00 00000000000000000000000000000000 ffffffff 00000001 00000000 00200200       lo\n" +
          garbage,
      );
      const t0 = Date.now();
      const r = await fetchCli(root, 3, "https://192.0.2.1:8443");
      expect(r.timedOut).toBe(false);
      expect(r.code, r.stderr).toBe(EXIT_CODES.deadline);
      expect(r.stderr).toMatch(
        /deadline of 3s exceeded while waiting for a network route to KBS 192\.0\.2\.1: no usable route in \/proc\/net\/route/,
      );
      expect(r.stderr).not.toMatch(/kbs: network route after/);
      expect(r.stderr).not.toMatch(/ECONNREFUSED|ENETUNREACH|EHOSTUNREACH|connect/i);
      expect(Date.now() - t0).toBeLessThan(20_000);
    },
  );

  describe("a udev queue that never drains (a hung rule)", () => {
    const hungQueue = () => {
      kbs = undefined;
      const { root, bringUp } = offlineRoot();
      bringUp();
      fs.mkdirSync(path.join(root, "run/udev"), { recursive: true });
      fs.writeFileSync(path.join(root, "run/udev/queue"), "");
      return root;
    };
    it.each([
      ["auto-detection (decides by what is absent too)", ["--allow-sample"]],
      ["a forced tee whose device is not there yet", ["--tee", "tpm", "--tpm", "/nonexistent/tpmrm0"]],
    ])("%s: waits for udev until the run's deadline, no KBS contact", async (_what, tee) => {
      const root = hungQueue();
      kbs = await startTestKbs({ tls: pki.tls, resources: { [RESOURCE]: SECRET } });
      const r = await fetchCli(root, 3, undefined, tee);
      expect(r.timedOut).toBe(false);
      expect(r.code, r.stderr).toBe(EXIT_CODES.deadline);
      expect(r.stderr).toMatch(/deadline of 3s exceeded while waiting for udev to process the device events/);
      expect(kbs.stats.events).toEqual([]);
    });

    it("a forced tee whose device is already there does not wait for udev: gets the key", async () => {
      const root = hungQueue();
      kbs = await startTestKbs({ tls: pki.tls, resources: { [RESOURCE]: SECRET } });
      const r = await fetchCli(root, 10);
      expect(r.code, r.stderr).toBe(0);
      expect(r.stdout.equals(SECRET)).toBe(true);
    });
  });
});
