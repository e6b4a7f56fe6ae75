// The KBS client's resilience policy against the trustee-faithful test KBS with injected faults:
// what recovers (within the deadline) and what fails closed at once. docs/RELIABILITY.md cites
// these tests by name.
import * as net from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import { fetchResource } from "../../../agent/kbs/client.ts";
import type { Attester, KbsClientOptions } from "../../../agent/kbs/types.ts";
import { Timeline } from "../../../agent/timeline.ts";
import { makeSampleSource } from "../../../platform/sample/source.ts";
import { Deadline } from "../../../platform/util/deadline.ts";
import { createLogger } from "../../../platform/util/log.ts";
import { startTestKbs, type Endpoint, type StartOptions, type TestKbs } from "../../kbs/server.ts";
import type { MalformedMode } from "../../kbs/faults.ts";
import { failure } from "./helpers/failure.ts";

const SECRET = Buffer.from("resilience-test-disk-key-0123456789");
const RESOURCE = "default/luks/root";
const PHASES: Endpoint[] = ["auth", "attest", "resource"];

const attester: Attester = {
  tee: "sample",
  collect: async (runtimeDigest) =>
    (await makeSampleSource().collect({} as never, { runtimeDigest, tee: "sample" })).primary,
};

let started: { close(): Promise<void> | void }[] = [];
afterEach(async () => {
  for (const s of started.splice(0)) await s.close();
});

async function kbs(o: StartOptions = {}): Promise<TestKbs> {
  const k = await startTestKbs({ resources: { [RESOURCE]: SECRET }, ...o });
  started.push(k);
  return k;
}

function client(endpoints: string[], over: Partial<KbsClientOptions> = {}) {
  const lines: string[] = [];
  const opts: KbsClientOptions = {
    endpoints,
    insecureHttp: true,
    requestTimeoutMs: 2000,
    resourceAttempts: 3,
    teeKey: "ec-p256",
    deadline: new Deadline(20_000),
    log: createLogger({ format: "text", verbose: false, write: (l) => lines.push(l) }),
    timeline: new Timeline(),
    backoff: { baseMs: 20, capMs: 100 },
    ...over,
  };
  return { opts, lines };
}

async function fetch(endpoints: string[], over: Partial<KbsClientOptions> = {}) {
  const c = client(endpoints, over);
  try {
    const got = await fetchResource(c.opts, attester, RESOURCE);
    expect(got.secret.equals(SECRET)).toBe(true);
    return { ...c, got };
  } finally {
    c.opts.deadline.dispose();
  }
}

async function fails(endpoints: string[], over: Partial<KbsClientOptions> = {}) {
  const c = client(endpoints, over);
  try {
    return { ...c, e: await failure(fetchResource(c.opts, attester, RESOURCE)) };
  } finally {
    c.opts.deadline.dispose();
  }
}

/** A TCP port that accepts connections and never answers (a hung KBS). */
async function hungServer(): Promise<string> {
  const sockets = new Set<net.Socket>();
  const s = net.createServer((sock) => sockets.add(sock));
  await new Promise<void>((r) => s.listen(0, "127.0.0.1", r));
  started.push({ close: () => (sockets.forEach((x) => x.destroy()), void s.close()) });
  return `http://127.0.0.1:${(s.address() as net.AddressInfo).port}`;
}

async function deadUrl(): Promise<string> {
  const k = await kbs();
  await k.refuseConnections();
  return k.url;
}

describe("outages: retried until the deadline, no count limit by default", () => {
  it("KBS down at start, up 1.5 s later: recovered, each retry logged once with its wait, a summary on success", async () => {
    const k = await kbs({ listenDelayMs: 1500 });
    const { lines, got } = await fetch([k.url]);
    expect(got.endpoint).toBe(k.url);
    const retries = lines.filter((l) => /ECONNREFUSED[^;]*; retry in \d+ ms/.test(l));
    expect(retries.length).toBeGreaterThan(5); // 100 ms cap: about 15 attempts in 1.5 s
    expect(lines.filter((l) => /ECONNREFUSED/.test(l))).toHaveLength(retries.length);
    expect(lines.join("")).toMatch(
      new RegExp(`kbs: resource released \\(.*attempts=${retries.length + 1} endpoints=1 waited_ms=\\d+`),
    );
  });

  it("KBS flapping (port closed and reopened every 200 ms): recovered", async () => {
    const k = await kbs({ faults: { delayMs: { attest: 150 } } });
    let open = true;
    const flap = setInterval(() => void ((open = !open) ? k.acceptConnections() : k.refuseConnections()), 200);
    try {
      await fetch([k.url]);
    } finally {
      clearInterval(flap);
    }
  });

  it("KBS down for the whole deadline: deadline error naming the attempts and the last failure", async () => {
    const t0 = Date.now();
    const { e } = await fails([await deadUrl()], { deadline: new Deadline(1500) });
    expect(e.kind).toBe("deadline");
    // the deadline ends either the wait between attempts or an attempt itself: both name the failures
    expect(e.message).toMatch(
      /deadline of 1.5s exceeded while (contacting the KBS|talking to KBS \S+ \(auth\)) \(\d+ attempts( before)?, last: .*ECONNREFUSED/,
    );
    expect(e.hint).toMatch(/reachable/);
    expect(Date.now() - t0).toBeLessThan(2500);
  });

  it("an explicit attempts_per_endpoint limit ends with a network error", async () => {
    const { e } = await fails([await deadUrl()], { attemptsPerEndpoint: 3 });
    expect(e.kind).toBe("network");
    expect(e.message).toMatch(/3 attempts over 1 endpoint\(s\) failed \(kbs.attempts_per_endpoint = 3\).*ECONNREFUSED/);
  });

  it("DNS failure is retried like any unreachable KBS, then the deadline names it", async () => {
    let lookups = 0;
    const lookup: net.LookupFunction = (host, _o, cb) => {
      lookups++;
      const err = Object.assign(new Error(`getaddrinfo ENOTFOUND ${host}`), { code: "ENOTFOUND" });
      (cb as (e: Error) => void)(err);
    };
    const { e } = await fails(["http://kbs.example.test:8080"], { lookup, deadline: new Deadline(800) });
    expect(e.kind).toBe("deadline");
    expect(e.message).toMatch(/ENOTFOUND kbs.example.test/);
    expect(lookups).toBeGreaterThan(2);
  });
});

describe("HTTP 503 / 429 and Retry-After", () => {
  for (const phase of PHASES)
    it(`503 without Retry-After at ${phase}: recovered`, async () => {
      const k = await kbs({ faults: { unavailable: { [phase]: { count: 2 } } } });
      await fetch([k.url]);
      expect(k.stats.events.filter((e) => e.fault === "503")).toHaveLength(2);
    });

  it("429 with Retry-After: 1 is honoured (measured gap), then recovered", async () => {
    const k = await kbs({ faults: { unavailable: { auth: { count: 1, retryAfter: "1", status: 429 } } } });
    await fetch([k.url], { backoff: { baseMs: 20, capMs: 5000 } });
    const [first, second] = k.stats.events.filter((e) => e.endpoint === "auth");
    expect(first!.fault).toBe("429");
    expect(second!.at - first!.at).toBeGreaterThanOrEqual(990);
  });

  it("a huge Retry-After (3600 s) is honoured only up to the backoff cap", async () => {
    const k = await kbs({ faults: { unavailable: { attest: { count: 1, retryAfter: "3600" } } } });
    const t0 = Date.now();
    await fetch([k.url], { backoff: { baseMs: 20, capMs: 700 } });
    const took = Date.now() - t0;
    expect(took).toBeGreaterThanOrEqual(690);
    expect(took).toBeLessThan(3000);
  });
});

describe("broken connections and bodies at each phase", () => {
  for (const phase of PHASES) {
    it(`dropped connection at ${phase}: recovered`, async () => {
      const k = await kbs({ faults: { drop: { [phase]: 1 } } });
      await fetch([k.url]);
      expect(k.stats.events.filter((e) => e.fault === "drop")).toHaveLength(1);
    });

    it(`body cut short (connection closed mid-body) at ${phase}: recovered`, async () => {
      const k = await kbs({ faults: { malformed: { [phase]: { count: 1, mode: "short-body" } } } });
      await fetch([k.url]);
    });

    it(`slowloris body at ${phase}: bounded by request_timeout_s, then recovered`, async () => {
      const k = await kbs({ faults: { malformed: { [phase]: { count: 1, mode: "slow" } } } });
      const t0 = Date.now();
      await fetch([k.url], { requestTimeoutMs: 700 });
      expect(Date.now() - t0).toBeGreaterThanOrEqual(690);
      expect(k.stats.events.filter((e) => e.fault === "malformed:slow")).toHaveLength(1);
    });

    for (const mode of ["truncated", "garbage", "wrong-shape", "oversized", "redirect"] as MalformedMode[])
      it(`${mode} body at ${phase}: failed closed as kbs-protocol, at once`, async () => {
        const k = await kbs({ faults: { malformed: { [phase]: { count: 99, mode } } } });
        const { e } = await fails([k.url]);
        // Valid JSON that is no JWE is refused by the JWE decoder (decrypt, exit 11), before any key use.
        expect(e.kind).toBe(phase === "resource" && mode === "wrong-shape" ? "decrypt" : "kbs-protocol");
        expect(e.message).toMatch(new RegExp(`\\(${phase}\\)|${phase} JWE`));
        expect(k.stats.requests[phase]).toBe(1);
      });
  }
});

describe("sessions and tokens", () => {
  it("session expired between attest and resource: the token alone gets the resource, one handshake", async () => {
    const k = await kbs({ faults: { expireSessionAfterAttest: 1 } });
    await fetch([k.url]);
    expect(k.stats.requests).toMatchObject({ auth: 1, attest: 1, resource: 1 });
  });

  it("session lost at /attest (another replica answered): a fresh handshake from /auth", async () => {
    const k = await kbs();
    let first = true;
    const lossy: Attester = {
      tee: "sample",
      collect: async (d) => {
        if (first) ((first = false), k.expireSessions()); // as if /attest reached a replica without our session
        return attester.collect(d);
      },
    };
    const c = client([k.url]);
    const got = await fetchResource(c.opts, lossy, RESOURCE);
    expect(got.secret.equals(SECRET)).toBe(true);
    expect(k.stats.requests).toMatchObject({ auth: 2, attest: 2, resource: 1 });
    expect(k.stats.errors.map((e) => e.reason)).toEqual(["session expired."]);
  });

  it("503 at resource after attest: the next attempt reuses the token (no second handshake)", async () => {
    const k = await kbs({ faults: { unavailable: { resource: { count: 1 } } } });
    await fetch([k.url]);
    expect(k.stats.requests).toMatchObject({ auth: 1, attest: 1, resource: 2 });
  });

  it("a kept token that expired meanwhile costs one fresh handshake, not a refusal", async () => {
    const k = await kbs({ faults: { unavailable: { resource: { count: 1 } } } });
    k.faults.expireTokenAfterAttest = 1;
    await fetch([k.url], { resourceAttempts: 1 });
    expect(k.stats.requests).toMatchObject({ auth: 2, attest: 2, resource: 3 });
  });

  it("wrong tee in the token (policy releases only to tpm): kbs-refused at once", async () => {
    const k = await kbs({ policy: (i) => i.tee === "tpm" });
    const { e } = await fails([k.url]);
    expect(e.kind).toBe("kbs-refused");
    expect(k.stats.errors.map((x) => x.reason)).toEqual(["policy denied resource default/luks/root for tee sample"]);
    expect(k.stats.requests.auth).toBe(1);
  });
});

describe("two endpoints", () => {
  it("first dead (connection refused): the second is used in the same round, without waiting", async () => {
    const k = await kbs();
    const { got, lines } = await fetch([await deadUrl(), k.url], { backoff: { baseMs: 5000, capMs: 5000 } });
    expect(got.endpoint).toBe(k.url);
    expect(lines.some((l) => /ECONNREFUSED[^;]*; next endpoint now/.test(l))).toBe(true);
  });

  it("first hung (accepts, never answers): request_timeout_s, then the second", async () => {
    const k = await kbs();
    const t0 = Date.now();
    const { got } = await fetch([await hungServer(), k.url], { requestTimeoutMs: 500 });
    expect(got.endpoint).toBe(k.url);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(490);
  });

  it("first answers garbage (not a KBS): set aside, the second releases", async () => {
    const bad = await kbs({ faults: { malformed: { auth: { count: 99, mode: "garbage" } } } });
    const k = await kbs();
    const { got } = await fetch([bad.url, k.url]);
    expect(got.endpoint).toBe(k.url);
    expect(bad.stats.requests.auth).toBe(1);
  });

  it("first refuses by policy: kbs-refused, the second is not asked (a refusal is the KBS's verdict)", async () => {
    const deny = await kbs({ policy: "deny" });
    const k = await kbs();
    const { e } = await fails([deny.url, k.url]);
    expect(e.kind).toBe("kbs-refused");
    expect(k.stats.requests.auth).toBe(0);
  });
});
