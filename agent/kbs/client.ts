// trustee RCAR 0.4.0 client (docs/spec/kbs-protocol.md §1): /auth -> evidence -> /attest -> resource GET
// with the attestation token as a Bearer header -> JWE decrypt. One handshake runs over one
// kept-alive connection (a TCP load balancer keeps it on one replica). The session cookie is
// carried by hand (name=value only: its Expires is server time and must not depend on the guest
// clock) and used only for /attest; the resource request relies on the token alone.
// The whole exchange is retried by the run's one policy (platform/util/retry.ts): rounds over all
// endpoints until the deadline; refusals that will not change stop it early.
import { CvmError } from "../../platform/util/errors.ts";
import { RESOURCE_PATH } from "../config/patterns.ts";
import { decideOnKbsError, parseErrorInformation, type ErrorDecision, type KbsPhase } from "./error-info.ts";
import { decryptResourceJwe } from "./jwe.ts";
import { runtimeDigest, selectHashAlgorithm, type RuntimeData } from "./runtime-data.ts";
import { generateTeeKey, type TeeKeyPair } from "./tee-key.ts";
import { retry, TransientError } from "../../platform/util/retry.ts";
import { waitForRoute } from "./route.ts";
import { endpointUrl, KbsTransport, type KbsConnection, type KbsHttpResponse } from "./transport.ts";
import type { Attester, FetchedSecret, KbsClientOptions } from "./types.ts";

export const KBS_PROTOCOL_VERSION = "0.4.0";
export const SESSION_COOKIE = "kbs-session-id";
/** What the reference client offers (kbs-types HashAlgorithm::list_all()). */
const SUPPORTED_HASH_ALGORITHMS = ["sha256", "sha384", "sha512", "sm3"];
/** trustee's default payload_request_size (2 MiB): a bigger /attest body is refused by actix with 413. */
export const MAX_ATTEST_BODY_BYTES = 2 * 1024 * 1024;
const MAX_NONCE_CHARS = 1024;
const MAX_COOKIE_VALUE_CHARS = 256;
const MAX_TOKEN_CHARS = 64 * 1024;
/** RFC 6265 cookie-octet: what we can send back verbatim in a Cookie header. */
const COOKIE_OCTETS = /^[\x21\x23-\x2b\x2d-\x3a\x3c-\x5b\x5d-\x7e]+$/;
/** JWS compact serialization characters. */
const TOKEN_CHARS = /^[A-Za-z0-9_\-.]+$/;

export interface Challenge {
  nonce: string;
  extraParams: unknown;
}

/** The exact /auth request body (kebab-case keys, extra-params always present). */
export function authRequestBody(tee: string): string {
  return JSON.stringify({
    version: KBS_PROTOCOL_VERSION,
    tee,
    "extra-params": { "supported-hash-algorithms": SUPPORTED_HASH_ALGORITHMS },
  });
}

/** The exact /attest request body (0.4.0 layout: kebab top level, snake_case inside tee-evidence). */
export function attestRequestBody(runtime: RuntimeData, primaryEvidence: unknown, initDataToml?: string): string {
  return JSON.stringify({
    "init-data": initDataToml !== undefined ? { format: "toml", body: initDataToml } : null,
    "runtime-data": { nonce: runtime.nonce, "tee-pubkey": runtime["tee-pubkey"] },
    "tee-evidence": { primary_evidence: primaryEvidence, additional_evidence: "" },
  });
}

function protocolError(endpoint: string, what: string, problem: string): CvmError {
  return new CvmError("kbs-protocol", `KBS ${endpoint} (${what}): ${problem}`, {
    hint: "check that the endpoint is a trustee KBS speaking protocol 0.4.0 (trustee v0.14 or later)",
  });
}

function parseJson(body: Uint8Array, endpoint: string, what: string): unknown {
  try {
    return JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(body));
  } catch {
    throw protocolError(endpoint, what, "response body is not UTF-8 JSON");
  }
}

function jsonObject(body: Uint8Array, endpoint: string, what: string): Record<string, unknown> {
  const v = parseJson(body, endpoint, what);
  if (v === null || typeof v !== "object" || Array.isArray(v))
    throw protocolError(endpoint, what, "response is not a JSON object");
  return v as Record<string, unknown>;
}

export function parseChallenge(body: Uint8Array, endpoint: string): Challenge {
  const obj = jsonObject(body, endpoint, "auth");
  const nonce = obj.nonce;
  if (typeof nonce !== "string" || nonce.length === 0 || nonce.length > MAX_NONCE_CHARS)
    throw protocolError(endpoint, "auth", `challenge nonce must be a string of 1..${MAX_NONCE_CHARS} characters`);
  return { nonce, extraParams: obj["extra-params"] };
}

/** kbs-session-id from Set-Cookie, name=value only; attributes (Expires, Path) are ignored on purpose. */
export function sessionCookie(setCookie: string | string[] | undefined, endpoint: string): string {
  for (const line of Array.isArray(setCookie) ? setCookie : setCookie !== undefined ? [setCookie] : []) {
    const pair = line.split(";", 1)[0]!;
    const eq = pair.indexOf("=");
    if (eq < 0 || pair.slice(0, eq).trim() !== SESSION_COOKIE) continue;
    let value = pair.slice(eq + 1).trim();
    if (value.length >= 2 && value.startsWith('"') && value.endsWith('"')) value = value.slice(1, -1);
    if (value.length === 0 || value.length > MAX_COOKIE_VALUE_CHARS || !COOKIE_OCTETS.test(value))
      throw protocolError(
        endpoint,
        "auth",
        `${SESSION_COOKIE} cookie value is empty, too long or has characters a cookie cannot carry`,
      );
    return `${SESSION_COOKIE}=${value}`;
  }
  throw protocolError(endpoint, "auth", `no ${SESSION_COOKIE} cookie in the /auth response`);
}

export function parseToken(body: Uint8Array, endpoint: string): string {
  const token = jsonObject(body, endpoint, "attest").token;
  if (typeof token !== "string" || token.length === 0 || token.length > MAX_TOKEN_CHARS || !TOKEN_CHARS.test(token))
    throw protocolError(endpoint, "attest", `"token" must be a JWT of 1..${MAX_TOKEN_CHARS} base64url/dot characters`);
  return token;
}

type Attempt = { secret: Buffer } | { refused: ErrorDecision; tokenWasReused: boolean };

/** One handshake on one connection: auth → evidence → attest → resource (or resource with a token we hold). */
class RcarFlow {
  /** The attestation token once /attest gave one (kept by the caller for a later attempt). */
  token: string | undefined;
  private reusedToken = false;

  constructor(
    private readonly opts: KbsClientOptions,
    private readonly conn: KbsConnection,
    private readonly attester: Attester,
    private readonly key: TeeKeyPair,
    private readonly resourcePath: string,
    token: string | undefined,
  ) {
    this.token = token;
    this.reusedToken = token !== undefined;
  }

  private refused(phase: KbsPhase, res: KbsHttpResponse): Attempt {
    return {
      refused: decideOnKbsError(
        phase,
        res.status,
        parseErrorInformation(res.body),
        this.conn.endpoint,
        this.resourcePath,
      ),
      tokenWasReused: phase === "resource" && this.reusedToken,
    };
  }

  async run(): Promise<Attempt> {
    if (this.token === undefined) {
      const refused = await this.handshake();
      if (refused) return refused;
    }
    return this.fetch(this.token!);
  }

  /** auth → evidence → attest; sets this.token, or returns the refusal. */
  private async handshake(): Promise<Attempt | undefined> {
    const { opts, conn, attester } = this;
    const { log, timeline } = opts;
    const endpoint = conn.endpoint;

    await attester.ready?.();
    log.info("kbs: requesting challenge", { endpoint, tee: attester.tee });
    const auth = await timeline.time("auth", () =>
      conn.request({ method: "POST", path: "/kbs/v0/auth", body: authRequestBody(attester.tee), what: "auth" }),
    );
    if (auth.status !== 200) return this.refused("auth", auth);
    const challenge = parseChallenge(auth.body, endpoint);
    const cookie = sessionCookie(auth.headers["set-cookie"], endpoint);

    const runtime: RuntimeData = { nonce: challenge.nonce, "tee-pubkey": this.key.publicJwk };
    const hashAlg = selectHashAlgorithm(challenge.extraParams);
    const digest = runtimeDigest(runtime, hashAlg);
    log.debug("kbs: collecting evidence bound to the runtime data", { hash: hashAlg });
    const evidence = await timeline.time("evidence", () => attester.collect(digest));
    const attestBody = attestRequestBody(runtime, evidence, opts.initDataToml);
    if (Buffer.byteLength(attestBody) > MAX_ATTEST_BODY_BYTES)
      throw new CvmError(
        "evidence",
        `attestation request is ${Buffer.byteLength(attestBody)} bytes, over trustee's default ${MAX_ATTEST_BODY_BYTES}-byte payload limit`,
        {
          hint: "raise payload_request_size in the KBS config, or reduce the evidence (e.g. event log size)",
        },
      );

    log.info("kbs: sending evidence", { endpoint, bytes: Buffer.byteLength(attestBody) });
    const attest = await timeline.time("attest", () =>
      conn.request({
        method: "POST",
        path: "/kbs/v0/attest",
        body: attestBody,
        headers: { cookie },
        what: "attest",
      }),
    );
    if (attest.status !== 200) return this.refused("attest", attest);
    this.token = parseToken(attest.body, endpoint);
    log.info("kbs: attestation accepted", { endpoint, token_chars: this.token.length });
    return undefined;
  }

  private async fetch(token: string): Promise<Attempt> {
    const { opts, conn, resourcePath } = this;
    const endpoint = conn.endpoint;
    const res = await opts.timeline.time("resource", () =>
      conn.request({
        method: "GET",
        path: `/kbs/v0/resource/${resourcePath}`,
        headers: { authorization: `Bearer ${token}` },
        what: "resource",
      }),
    );
    if (res.status !== 200) return this.refused("resource", res);
    const jwe = parseJson(res.body, endpoint, "resource");
    opts.log.debug("kbs: resource received, decrypting", { jwe_bytes: res.body.length });
    const secret = await opts.timeline.time("decrypt", () => decryptResourceJwe(jwe, this.key));
    if (secret.length === 0)
      throw new CvmError("resource-missing", `KBS ${endpoint} released resource ${resourcePath} but it is empty`, {
        hint: "upload the real secret to the KBS",
      });
    return { secret };
  }
}

/** Failures that say this endpoint is unusable (not the KBS's verdict on us): try the others. */
function endpointUnusable(e: unknown): e is CvmError {
  return e instanceof CvmError && (e.kind === "tls" || e.kind === "kbs-protocol");
}

function allUnusable(failures: CvmError[]): CvmError {
  if (failures.length === 1) return failures[0]!;
  const tls = failures.find((f) => f.kind === "tls");
  return new CvmError(
    tls ? "tls" : "kbs-protocol",
    `all ${failures.length} KBS endpoints are unusable: ${failures.map((f) => f.message).join("; ")}`,
    { hint: (tls ?? failures[0]!).hint },
  );
}

const UNREACHABLE_HINT =
  "check that the KBS is running and reachable from the guest (address, port, firewall, guest network)";

/** One attested session: several resources under one handshake's token (the same ephemeral key). */
export interface KbsSession {
  /** Fetch REPO/TYPE/TAG; the first call attests, later ones reuse the token where it still works. */
  fetch(resourcePath: string): Promise<FetchedSecret>;
}

function checkResourcePath(resourcePath: string): void {
  if (!RESOURCE_PATH.test(resourcePath))
    throw new CvmError("config", `resource path '${resourcePath}' is not REPO/TYPE/TAG as trustee accepts it`, {
      hint: "three segments of [A-Za-z0-9_-] followed by [A-Za-z0-9_.-]*, e.g. default/luks/root",
    });
}

/**
 * Attest to the KBS and fetch one resource (REPO/TYPE/TAG). Attempts go round the endpoints
 * until the deadline (or opts.attemptsPerEndpoint per endpoint, when set), with backoff between
 * rounds. An endpoint that fails TLS or the protocol is set aside. A refusal is final except
 * where a fresh handshake may help (trustee's /attest and token errors, its 401 for a missing
 * resource), bounded by opts.resourceAttempts handshakes.
 */
export async function fetchResource(
  opts: KbsClientOptions,
  attester: Attester,
  resourcePath: string,
): Promise<FetchedSecret> {
  checkResourcePath(resourcePath);
  return (await openKbsSession(opts, attester)).fetch(resourcePath);
}

/**
 * A session over the configured endpoints: one ephemeral key, and the token each endpoint gave,
 * kept for the next resource. Each fetch() follows fetchResource's retry rules; a kept token that
 * the KBS no longer accepts costs a fresh handshake (not one of the bounded refusals).
 */
export async function openKbsSession(opts: KbsClientOptions, attester: Attester): Promise<KbsSession> {
  if (opts.endpoints.length === 0)
    throw new CvmError("config", "no KBS endpoint configured", { hint: "set kbs.endpoints (or --kbs URL)" });
  for (const endpoint of opts.endpoints) endpointUrl(endpoint, "/", opts.insecureHttp); // refuse bad config before any I/O

  const { log } = opts;
  const keygenStart = performance.now();
  const key = await generateTeeKey(opts.teeKey);
  log.debug("kbs: ephemeral TEE key generated", { type: opts.teeKey, ms: Math.round(performance.now() - keygenStart) });
  const transport = new KbsTransport({
    caPem: opts.caPem,
    insecureHttp: opts.insecureHttp,
    requestTimeoutMs: opts.requestTimeoutMs,
    deadline: opts.deadline,
    ...(opts.lookup ? { lookup: opts.lookup } : {}),
  });
  const state: SessionState = { key, transport, tokens: new Map(), unusable: new Map(), turn: 0 };
  return {
    fetch: async (resourcePath) => {
      checkResourcePath(resourcePath);
      return fetchInSession(opts, attester, state, resourcePath);
    },
  };
}

interface SessionState {
  key: TeeKeyPair;
  transport: KbsTransport;
  /** The attestation token per endpoint, for the next request there. */
  tokens: Map<string, string>;
  unusable: Map<string, CvmError>;
  turn: number;
}

async function fetchInSession(
  opts: KbsClientOptions,
  attester: Attester,
  state: SessionState,
  resourcePath: string,
): Promise<FetchedSecret> {
  const { log, deadline } = opts;
  const { key, transport, tokens, unusable } = state;
  const live = () => opts.endpoints.filter((e) => !unusable.has(e));
  // A later resource goes first to the endpoint whose token we hold (no second handshake).
  let holder: string | undefined = live().find((e) => tokens.has(e));

  /** One flow on its own connection; a refusal a fresh handshake may fix is returned, not thrown. */
  const flowAt = async (endpoint: string): Promise<{ secret: Buffer } | { again: CvmError; counted: boolean }> => {
    const conn = transport.connect(endpoint);
    const flow = new RcarFlow(opts, conn, attester, key, resourcePath, tokens.get(endpoint));
    tokens.delete(endpoint);
    try {
      const outcome = await flow.run();
      if ("secret" in outcome) {
        tokens.set(endpoint, flow.token!); // serves the session's next resource
        return outcome;
      }
      const { rehandshake, error } = outcome.refused;
      if (!rehandshake) throw error;
      // A token kept from an earlier attempt may have expired or reach a replica that does not
      // trust it: that costs a handshake, not one of the bounded refusals.
      return { again: error, counted: !outcome.tokenWasReused };
    } catch (e) {
      // The resource request failed after /attest: the token serves the next attempt here.
      if (e instanceof TransientError && flow.token !== undefined) tokens.set(endpoint, flow.token);
      throw e;
    } finally {
      await conn.close();
    }
  };

  /** One attempt = one endpoint, up to opts.resourceAttempts handshakes where trustee's answers warrant them. */
  const attempt = async (): Promise<FetchedSecret> => {
    const endpoints = live();
    const endpoint = holder ?? endpoints[state.turn++ % endpoints.length]!;
    holder = undefined;
    try {
      for (let handshake = 1; ;) {
        const outcome = await flowAt(endpoint);
        if ("secret" in outcome) return { secret: outcome.secret, endpoint };
        if (!outcome.counted) continue;
        if (handshake >= Math.max(1, opts.resourceAttempts)) throw outcome.again;
        handshake++;
        log.warning(`kbs: ${outcome.again.message}; new handshake ${handshake}/${opts.resourceAttempts}`, { endpoint });
      }
    } catch (e) {
      if (!endpointUnusable(e)) throw e;
      unusable.set(endpoint, e);
      if (live().length === 0) throw allUnusable([...unusable.values()]);
      throw new TransientError(`${e.message}; using the other endpoints`);
    }
  };

  try {
    // the agent starts before the network is up: no attempt (and no backoff) before a route exists
    if (opts.routeRoot !== undefined) {
      const routeRoot = opts.routeRoot;
      await opts.timeline.time("route", () => waitForRoute(opts.endpoints, routeRoot, deadline, log));
    }
    const result = await retry(
      {
        deadline,
        doing: "contacting the KBS",
        ...(opts.attemptsPerEndpoint !== undefined
          ? { maxAttempts: opts.attemptsPerEndpoint * opts.endpoints.length }
          : {}),
        roundSize: () => live().length,
        ...(opts.backoff ? { backoff: opts.backoff } : {}),
        onRetry: ({ attempt: n, error, waitMs, roundEnds }) =>
          log.info(`kbs: ${error.message}; ${roundEnds ? `retry in ${waitMs} ms` : "next endpoint now"}`, {
            attempt: n,
          }),
        exhausted: (last, n) =>
          new CvmError(
            "network",
            `KBS not reachable: ${n} attempts over ${opts.endpoints.length} endpoint(s) failed (kbs.attempts_per_endpoint = ${opts.attemptsPerEndpoint}); last: ${last.message}`,
            { hint: UNREACHABLE_HINT },
          ),
      },
      attempt,
    );
    log.info("kbs: resource released", {
      endpoint: result.value.endpoint,
      resource: resourcePath,
      attempts: result.attempts,
      endpoints: opts.endpoints.length,
      waited_ms: result.waitedMs,
    });
    return result.value;
  } catch (e) {
    if (e instanceof CvmError && e.kind === "deadline" && e.hint === undefined && /\bKBS\b/.test(e.message))
      throw new CvmError("deadline", e.message, { hint: `${UNREACHABLE_HINT}, or raise deadline_s`, cause: e });
    throw e;
  }
}
