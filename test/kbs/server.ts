// A trustee-faithful KBS test double (protocol 0.4.0, docs/spec/kbs-protocol.md §1–§5) on node:http(s), so it runs
// under node/vitest and under bun. It checks what trustee checks and nothing is accepted for
// convenience: sessions, nonce, runtime-data binding, verifier, token signature and expiry, resource
// policy, JWE to the attested key. Faults are injectable for client tests (./faults.ts).
import * as crypto from "node:crypto";
import * as http from "node:http";
import * as https from "node:https";
import type { AddressInfo, Socket } from "node:net";
import { b64, hex, utf8 } from "../../platform/util/bytes.ts";
import {
  attestFailed,
  authFailed,
  KbsError,
  jweError,
  pluginInternal,
  pluginNotFound,
  policyDeny,
  tokenNotFound,
  tokenVerifierError,
} from "./errors.ts";
import { malformedBody, noFaults, take, takeCount, type Endpoint, type Faults } from "./faults.ts";
import { AdminError, AdminGate, type AdminConfig } from "./admin.ts";
import { checkInitData, type CheckedInitData } from "./init-data.ts";
import { encryptJwe, serializeJwe, tamperJwe } from "./jwe.ts";
import {
  checkProtocolVersion,
  knownTees,
  MessageError,
  parseAttestation,
  parseAuthRequest,
  parseTeePubKey,
  type AttestationMessage,
} from "./messages.ts";
import { primaryRuntimeData, runtimeDigest } from "./runtime-data.ts";
import { sessionCookie, sessionIdFromCookie, SessionStore, type Session } from "./sessions.ts";
import { compileRegoSubset, RegoSubsetError } from "./rego-subset.ts";
import { ANNOTATED_EVIDENCE, TokenError, TokenIssuer, teePubkeyFromClaims, type TokenClaims } from "./token.ts";
import { loadVerifier } from "./verifiers/index.ts";
import type { TeeVerifier } from "./verifiers/types.ts";

export type { Endpoint, Faults } from "./faults.ts";
export type { AdminConfig } from "./admin.ts";

export const KBS_PREFIX = "/kbs/v0/";
/** trustee ResourceDesc: three segments, each starting with [A-Za-z0-9_-], dots allowed after. */
const SEGMENT = "[a-zA-Z0-9_\\-]+[a-zA-Z0-9_\\-.]*";
export const RESOURCE_PATH = new RegExp(`^${SEGMENT}/${SEGMENT}/${SEGMENT}$`);

export interface PolicyInput {
  /** Verified token claims (EAR). */
  claims: TokenClaims;
  /** The attested primary TEE, from the claims. */
  tee: string | undefined;
  plugin: "resource";
  /** "repo/type/tag" */
  resourcePath: string;
}
export type ResourcePolicy = "allow" | "deny" | ((input: PolicyInput) => boolean | Promise<boolean>);

/** An owner's policy for a generic image: release only to the init-data whose digest (hex) it wrote. */
export function onlyInitData(digestHex: string): ResourcePolicy {
  return (input) => {
    const cpu0 = (input.claims.submods as Record<string, Record<string, unknown>> | undefined)?.cpu0;
    const annotated = cpu0?.[ANNOTATED_EVIDENCE] as Record<string, unknown> | undefined;
    return annotated?.init_data === digestHex;
  };
}

export interface TlsMaterial {
  keyPem: string;
  certPem: string;
  /** The CA that signed certPem, handed to clients. */
  caPem: string;
}

export interface StartOptions {
  host?: string;
  port?: number;
  /** HTTPS when given; plain HTTP otherwise (trustee's insecure_http). */
  tls?: TlsMaterial;
  resources?: Record<string, Uint8Array | string>;
  /** Default "allow" (trustee's default.rego would deny `sample`; see README). */
  policy?: ResourcePolicy;
  /** The [admin] section: who may upload resources and policies. Default DenyAll (see README). */
  admin?: AdminConfig;
  /** Only these TEEs may pass /attest (default: every TEE that has a verifier). */
  allowTees?: string[];
  /** Accept the v0.14/v0.15 Azure names (azsnpvtpm) instead of az-snp-vtpm. */
  legacyAzureNames?: boolean;
  /** Verifiers to use instead of the registry's (tests). */
  verifiers?: Record<string, TeeVerifier>;
  sessionTimeoutMs?: number;
  tokenLifetimeSec?: number;
  tokenLeewaySec?: number;
  maxBodyBytes?: number;
  faults?: Partial<Faults>;
  /** Challenge nonces (default: base64 STANDARD of 32 random bytes). Tests pin it to replay vectors. */
  nonce?: () => string;
  /** Open the port only after this long (connections are refused until then). */
  listenDelayMs?: number;
  log?: (line: string) => void;
  /** Sees every request as it arrived (tests that check the client's exact wire bytes). */
  onRequest?: (req: RecordedRequest) => void;
}

export interface RecordedRequest {
  method: string;
  path: string;
  headers: http.IncomingHttpHeaders;
  body: string;
}

export interface KbsEvent {
  endpoint: Endpoint | "other";
  method: string;
  path: string;
  /** ms since the epoch at arrival */
  at: number;
  status?: number;
  fault?: string;
}

export interface KbsStats {
  requests: Record<Endpoint | "other", number>;
  events: KbsEvent[];
  /** Every error answer with its real cause (trustee only logs the cause). */
  errors: { endpoint: Endpoint | "other"; variant: string; detail: string; reason?: string }[];
  attested: number;
  released: number;
  /** Admin writes that succeeded: resource uploads/deletes and resource-policy updates. */
  uploads: { method: string; path: string; bytes: number }[];
}

export interface TestKbs {
  url: string;
  host: string;
  port: number;
  caPem: string | undefined;
  resources: Map<string, Uint8Array>;
  setResource(path: string, value: Uint8Array | string): void;
  deleteResource(path: string): void;
  setPolicy(policy: ResourcePolicy): void;
  /** The last Rego text accepted by POST /kbs/v0/resource-policy (undefined before one). */
  readonly policyText: string | undefined;
  /** Mutable: tests change knobs at runtime. */
  faults: Faults;
  stats: KbsStats;
  resetStats(): void;
  /** Expire every live session now. */
  expireSessions(): void;
  /** Reject this attestation token from now on, as trustee does once its lifetime has passed. */
  expireToken(token: string): void;
  /** Close the listening port (and live connections); reopen after `forMs` if given. */
  refuseConnections(forMs?: number): Promise<void>;
  acceptConnections(): Promise<void>;
  readonly listening: boolean;
  /** The public key tokens are signed with (for tests that forge tokens). */
  tokenJwk: Record<string, string>;
  close(): Promise<void>;
}

interface Reply {
  status: number;
  headers: Record<string, string>;
  body: string;
}

function emptyStats(): KbsStats {
  return {
    requests: { auth: 0, attest: 0, resource: 0, other: 0 },
    events: [],
    errors: [],
    attested: 0,
    released: 0,
    uploads: [],
  };
}

function toBytes(v: Uint8Array | string): Uint8Array {
  return typeof v === "string" ? utf8(v) : new Uint8Array(v);
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function freePort(host: string): Promise<number> {
  const s = http.createServer();
  await new Promise<void>((res, rej) => s.once("error", rej).listen(0, host, res));
  const port = (s.address() as AddressInfo).port;
  await new Promise<void>((res) => s.close(() => res()));
  return port;
}

class KbsCore {
  readonly sessions: SessionStore;
  readonly issuer: TokenIssuer;
  readonly tees: readonly string[];
  readonly resources = new Map<string, Uint8Array>();
  policy: ResourcePolicy;
  policyText: string | undefined;
  readonly admin: AdminGate;
  faults: Faults;
  stats = emptyStats();
  /** Tokens a fault declared expired (their exp is real time; this stands in for waiting 6 minutes). */
  readonly expiredTokens = new Set<string>();

  constructor(private readonly opts: StartOptions) {
    this.sessions = new SessionStore(opts.sessionTimeoutMs ?? 5 * 60_000);
    this.issuer = new TokenIssuer(opts.tokenLifetimeSec ?? 300, opts.tokenLeewaySec ?? 60);
    this.tees = knownTees(opts.legacyAzureNames ?? false);
    this.policy = opts.policy ?? "allow";
    this.admin = new AdminGate(opts.admin ?? { mode: "DenyAll" });
    this.faults = { ...noFaults(), ...opts.faults };
    for (const [k, v] of Object.entries(opts.resources ?? {})) this.resources.set(k, toBytes(v));
  }

  log(line: string): void {
    this.opts.log?.(line);
  }

  // ---- /auth -------------------------------------------------------------------------------
  auth(body: Uint8Array): Reply {
    let request;
    try {
      request = parseAuthRequest(body, this.tees);
    } catch (e) {
      throw authFailed("deserialize Request", (e as Error).message);
    }
    const v = checkProtocolVersion(request.version);
    if (!v.ok && v.parseError)
      throw authFailed("failed to parse KBS version", `unparsable version "${request.version}"`);
    if (!v.ok)
      throw authFailed(`KBS Client Protocol Version Mismatch: expect =0.4.0 while the request is ${request.version}`);
    const nonce = this.opts.nonce?.() ?? b64(new Uint8Array(crypto.randomBytes(32)));
    const session = this.sessions.create(request.tee, nonce);
    this.log(`auth: tee=${request.tee} session=${session.id.slice(0, 8)}…`);
    return {
      status: 200,
      headers: { "set-cookie": sessionCookie(session), "content-type": "application/json" },
      body: JSON.stringify({ nonce, "extra-params": "" }),
    };
  }

  // ---- /attest -----------------------------------------------------------------------------
  async attest(body: Uint8Array, cookieHeader: string | undefined): Promise<Reply> {
    // trustee's order (backend.rs __attest): cookie, body shape, session, expiry, Attested short-cut.
    const id = sessionIdFromCookie(cookieHeader);
    if (id === undefined) throw attestFailed("cookie not found");
    let msg: AttestationMessage;
    try {
      msg = parseAttestation(body);
    } catch (e) {
      throw attestFailed(`deserialize Attestation: ${(e as Error).message}`);
    }
    const found = this.sessions.lookup(id);
    if ("missing" in found) throw attestFailed("session not found");
    if ("expired" in found) throw attestFailed("session expired.");
    const session = found.session;
    const reply = (token: string): Reply => ({
      status: 200,
      headers: { "set-cookie": sessionCookie(session), "content-type": "application/json" },
      body: JSON.stringify({ token }),
    });
    // Idempotent retry: an Attested session returns its token; the body must deserialize, but its
    // nonce and evidence are not looked at.
    if (session.token !== undefined) return reply(session.token);
    if (msg.nonce !== session.nonce)
      throw attestFailed(
        "the nonce in the handshake session is different from the client side in KBS protocol's Attestation message",
      );
    const token = await this.verifyEvidence(session, msg);
    session.token = token;
    this.stats.attested++;
    const out = reply(token);
    if (this.faults.expireSessionAfterAttest > 0) {
      this.faults.expireSessionAfterAttest--;
      this.sessions.expire(session.id);
    }
    if (this.faults.expireTokenAfterAttest > 0) {
      this.faults.expireTokenAfterAttest--;
      this.sessions.expire(session.id);
      this.expiredTokens.add(token);
    }
    this.log(`attest: tee=${session.tee} session=${session.id.slice(0, 8)}… verified`);
    return out;
  }

  private async verifier(tee: string): Promise<TeeVerifier> {
    if (this.opts.allowTees && !this.opts.allowTees.includes(tee))
      throw attestFailed(`tee "${tee}" is not allowed by this KBS (allowTees: ${this.opts.allowTees.join(",")})`);
    const v = this.opts.verifiers?.[tee] ?? (await loadVerifier(tee));
    if (!v) throw attestFailed(`no verifier for tee "${tee}" in test/kbs/verifiers`);
    return v;
  }

  private async verifyEvidence(session: Session, msg: AttestationMessage): Promise<string> {
    let initData: CheckedInitData | null = null;
    try {
      initData = msg.initData ? checkInitData(msg.initData) : null;
    } catch (e) {
      throw attestFailed((e as Error).message);
    }
    // Additional devices are bound to {tee-pubkey, nonce}; the primary also to the additional_evidence string.
    if (msg.additionalEvidence !== "") await this.verifyDevices(session, msg);
    const runtimeData = primaryRuntimeData(msg.teePubkey, session.nonce, msg.additionalEvidence);
    const digest = runtimeDigest(session.tee, runtimeData);
    const verifier = await this.verifier(session.tee);
    let claims;
    try {
      claims = await verifier.verify(msg.primaryEvidence, digest, { tee: session.tee, initData, nonce: session.nonce });
    } catch (e) {
      throw attestFailed(`verify TEE evidence failed: ${(e as Error).message}`);
    }
    return this.issuer.sign(
      this.issuer.earClaims({
        tee: session.tee,
        teeClaims: claims,
        reportDataHex: hex(digest),
        runtimeDataClaims: { ...runtimeData },
        ...(initData ? { initDataHex: hex(initData.digest) } : {}),
      }),
    );
  }

  private async verifyDevices(session: Session, msg: AttestationMessage): Promise<void> {
    let devices: unknown;
    try {
      devices = JSON.parse(msg.additionalEvidence);
    } catch (e) {
      throw attestFailed(`additional_evidence is not JSON: ${(e as Error).message}`);
    }
    if (devices === null || typeof devices !== "object" || Array.isArray(devices))
      throw attestFailed("additional_evidence is not a JSON object of tee -> evidence");
    const digest = runtimeDigest(session.tee, { "tee-pubkey": msg.teePubkey, nonce: session.nonce });
    for (const [tee, evidence] of Object.entries(devices)) {
      if (!this.tees.includes(tee)) throw attestFailed(`additional_evidence: unknown variant \`${tee}\``);
      const v = await this.verifier(tee);
      try {
        await v.verify(evidence, digest, { tee, initData: null, nonce: session.nonce });
      } catch (e) {
        throw attestFailed(`verify additional evidence (${tee}) failed: ${(e as Error).message}`);
      }
    }
  }

  // ---- /resource ---------------------------------------------------------------------------
  private tokenFor(cookieHeader: string | undefined, authorization: string | undefined): string {
    const id = sessionIdFromCookie(cookieHeader);
    if (id !== undefined) {
      const found = this.sessions.lookup(id);
      if ("session" in found && found.session.token !== undefined) return found.session.token;
    }
    const m = /^Bearer\s+(\S+)$/.exec(authorization ?? "");
    if (!m)
      throw tokenNotFound(
        id === undefined
          ? "no session cookie and no Authorization: Bearer"
          : "session not attested/expired and no Authorization: Bearer",
      );
    return m[1]!;
  }

  private async allowed(input: PolicyInput): Promise<boolean> {
    if (this.policy === "allow") return true;
    if (this.policy === "deny") return false;
    return (await this.policy(input)) === true;
  }

  async resource(
    resourcePath: string,
    cookieHeader: string | undefined,
    authorization: string | undefined,
  ): Promise<Reply> {
    const token = this.tokenFor(cookieHeader, authorization);
    let claims: TokenClaims;
    try {
      if (this.expiredTokens.has(token)) throw new TokenError("token expired (fault expireTokenAfterAttest)");
      claims = this.issuer.verify(token);
    } catch (e) {
      throw tokenVerifierError(e instanceof TokenError ? e.message : String(e));
    }
    const annotated = (claims.submods as Record<string, Record<string, Record<string, unknown>>> | undefined)?.cpu0?.[
      "ear.veraison.annotated-evidence"
    ];
    const tee = annotated ? Object.keys(annotated).find((k) => this.tees.includes(k)) : undefined;
    if (!(await this.allowed({ claims, tee, plugin: "resource", resourcePath })))
      throw policyDeny(`policy denied resource ${resourcePath} for tee ${tee}`);
    if (!RESOURCE_PATH.test(resourcePath)) throw pluginInternal(`invalid resource path "${resourcePath}"`);
    const value = this.resources.get(resourcePath);
    if (value === undefined) throw pluginInternal(`resource not found: ${resourcePath}`);
    let tpk;
    try {
      tpk = parseTeePubKey(teePubkeyFromClaims(claims));
    } catch (e) {
      throw tokenVerifierError(`Failed to extract Tee public key from claims: ${(e as Error).message}`);
    }
    let jwe;
    try {
      jwe = await encryptJwe(tpk, value);
    } catch (e) {
      throw jweError((e as Error).message);
    }
    if (take(this.faults.tamperJwe)) jwe = tamperJwe(jwe, this.faults.tamperJwe.part);
    this.stats.released++;
    this.log(`resource: ${resourcePath} released (${value.length} bytes, ${tpk.kty}/${tpk.alg})`);
    return { status: 200, headers: { "content-type": "application/json" }, body: serializeJwe(jwe) };
  }

  // ---- routing -----------------------------------------------------------------------------
  classify(method: string, path: string): { endpoint: Endpoint | "other"; plugin: string; rest: string } | undefined {
    if (!path.startsWith(KBS_PREFIX)) return undefined;
    const [plugin = "", ...rest] = path.slice(KBS_PREFIX.length).split("/");
    const endpoint =
      plugin === "auth" && method === "POST"
        ? "auth"
        : plugin === "attest" && method === "POST"
          ? "attest"
          : plugin === "resource"
            ? "resource"
            : "other";
    return { endpoint, plugin, rest: rest.join("/") };
  }

  /** trustee's admin check; `wrap` is how the calling branch reports an admin::Error. */
  private adminCheck(uri: string, headers: http.IncomingHttpHeaders, wrap: (detail: string) => KbsError): void {
    try {
      this.admin.check(uri, headers.authorization);
    } catch (e) {
      if (e instanceof AdminError) throw wrap(e.message);
      throw e;
    }
  }

  async route(
    method: string,
    plugin: string,
    rest: string,
    body: Uint8Array,
    headers: http.IncomingHttpHeaders,
    uri: string,
  ): Promise<Reply> {
    if (plugin === "auth" && method === "POST") return this.auth(body);
    if (plugin === "attest" && method === "POST") return this.attest(body, headers.cookie);
    if (["attestation-policy", "resource-policy", "reference-value"].includes(plugin)) {
      const access = (detail: string) =>
        new KbsError("AdminAuthAccess", `admin access denied for endpoint ${plugin}: ${detail}`);
      this.adminCheck(uri, headers, access);
      if (plugin === "resource-policy" && method === "POST") return this.setResourcePolicy(body);
      throw access("not implemented by the test KBS (only POST resource-policy is)");
    }
    if (plugin !== "resource") throw pluginNotFound(plugin);
    if (method === "POST" || method === "DELETE") {
      // The resource plugin's validate_auth says POST/DELETE are admin calls; admin::Error converts
      // into AdminAuthInitialization through `?` (kbs/src/error.rs #[from]).
      this.adminCheck(
        uri,
        headers,
        (detail) => new KbsError("AdminAuthInitialization", `failed to initialize [admin] configuration: ${detail}`),
      );
      return this.writeResource(method, rest, body);
    }
    return this.resource(rest, headers.cookie, headers.authorization);
  }

  // ---- admin: resource and resource policy -------------------------------------------------
  private writeResource(method: string, resourcePath: string, body: Uint8Array): Reply {
    if (!RESOURCE_PATH.test(resourcePath)) throw pluginInternal(`invalid resource path "${resourcePath}"`);
    if (method === "DELETE") this.resources.delete(resourcePath);
    else this.resources.set(resourcePath, new Uint8Array(body));
    this.stats.uploads.push({ method, path: resourcePath, bytes: body.length });
    this.log(`admin: ${method} resource ${resourcePath} (${body.length} bytes)`);
    return { status: 200, headers: { "content-type": "text/xml" }, body: "" };
  }

  private setResourcePolicy(body: Uint8Array): Reply {
    const parseFail = (why: string) => new KbsError("ParsePolicyError", `Failed to parse policy: ${why}`);
    let request: unknown;
    try {
      request = JSON.parse(Buffer.from(body).toString("utf8"));
    } catch {
      throw parseFail("Illegal SetPolicy Request Json");
    }
    const policy = (request as { policy?: unknown } | null)?.policy;
    if (policy === undefined) throw parseFail("No `policy` field inside SetPolicy Request Json");
    if (typeof policy !== "string") throw parseFail("`policy` field is not a string in SetPolicy Request Json");
    const rego = decodeUrlSafeNoPad(policy);
    if (rego === undefined) throw parseFail("Failed to decode policy: not base64url without padding");
    let compiled;
    try {
      compiled = compileRegoSubset(rego);
    } catch (e) {
      if (e instanceof RegoSubsetError) throw new KbsError("PolicyEngineError", `Policy engine error: ${e.message}`);
      throw e;
    }
    this.policy = (i) =>
      compiled.evaluate(i.claims, { plugin: i.plugin, "resource-path": i.resourcePath.split("/"), query: {} });
    this.policyText = rego;
    this.stats.uploads.push({ method: "POST", path: "resource-policy", bytes: body.length });
    this.log(`admin: resource policy set (${compiled.rules.length} allow rule(s))`);
    return { status: 200, headers: {}, body: "" };
  }
}

/** Rust base64 URL_SAFE_NO_PAD: no padding, no '+' or '/', canonical trailing bits; then UTF-8. */
export function decodeUrlSafeNoPad(text: string): string | undefined {
  if (!/^[A-Za-z0-9_-]*$/.test(text) || text.length % 4 === 1) return undefined;
  const bytes = Buffer.from(text, "base64url");
  if (bytes.toString("base64url") !== text) return undefined;
  try {
    return new TextDecoder("utf-8", { fatal: true }).decode(bytes);
  } catch {
    return undefined;
  }
}

function readBody(req: http.IncomingMessage, limit: number): Promise<Uint8Array | "too-large"> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on("data", (c: Buffer) => {
      size += c.length;
      if (size > limit) {
        resolve("too-large");
        req.removeAllListeners("data");
        req.resume();
        return;
      }
      chunks.push(c);
    });
    req.on("end", () => resolve(new Uint8Array(Buffer.concat(chunks))));
    req.on("error", reject);
  });
}

export async function startTestKbs(opts: StartOptions = {}): Promise<TestKbs> {
  const core = new KbsCore(opts);
  const host = opts.host ?? "127.0.0.1";
  const maxBody = opts.maxBodyBytes ?? 2 * 1024 * 1024;

  const send = (res: http.ServerResponse, ev: KbsEvent, r: Reply) => {
    ev.status = r.status;
    res.writeHead(r.status, { ...r.headers, "content-length": Buffer.byteLength(r.body) });
    res.end(r.body);
  };

  /** Slowloris: the real answer one byte every 250 ms, until the client gives up or it is all sent. */
  const drip = (res: http.ServerResponse, ev: KbsEvent, r: Reply) => {
    ev.status = r.status;
    const bytes = Buffer.from(r.body);
    res.writeHead(r.status, { ...r.headers, "content-length": bytes.length });
    let i = 0;
    const timer = setInterval(() => {
      if (res.destroyed || i >= bytes.length) return void (clearInterval(timer), res.end());
      res.write(bytes.subarray(i, ++i));
    }, 250);
    res.on("close", () => clearInterval(timer));
  };

  async function handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const method = req.method ?? "GET";
    const path = new URL(req.url ?? "/", "http://kbs").pathname;
    const route = core.classify(method, path);
    const endpoint = route?.endpoint ?? "other";
    const ev: KbsEvent = { endpoint, method, path, at: Date.now() };
    core.stats.requests[endpoint]++;
    core.stats.events.push(ev);
    const body = await readBody(req, maxBody);
    if (body === "too-large") return send(res, ev, { status: 413, headers: {}, body: "A payload reached size limit." });
    opts.onRequest?.({ method, path, headers: req.headers, body: Buffer.from(body).toString("utf8") });
    if (method === "GET" && path === "/healthz") return send(res, ev, { status: 200, headers: {}, body: "" });
    if (!route) return send(res, ev, { status: 404, headers: {}, body: "" });
    if (method !== "GET" && method !== "POST" && method !== "DELETE")
      return send(res, ev, { status: 405, headers: {}, body: "" });

    const f = core.faults;
    if (endpoint !== "other") {
      const delay = f.delayMs[endpoint] ?? 0;
      if (delay > 0) await sleep(delay);
      if (takeCount(f.drop, endpoint)) {
        ev.fault = "drop";
        req.socket.destroy();
        return;
      }
      const unavailable = f.unavailable[endpoint];
      if (take(unavailable)) {
        ev.fault = String(unavailable!.status ?? 503);
        return send(res, ev, {
          status: unavailable!.status ?? 503,
          headers: unavailable!.retryAfter !== undefined ? { "retry-after": unavailable!.retryAfter } : {},
          body: "service unavailable",
        });
      }
    }

    let reply: Reply;
    try {
      reply = await core.route(method, route.plugin, route.rest, body, req.headers, req.url ?? path);
    } catch (e) {
      const err =
        e instanceof KbsError
          ? e
          : new KbsError("PluginInternalError", "Plugin internal error", `unexpected: ${(e as Error).stack ?? e}`);
      core.stats.errors.push({
        endpoint,
        variant: err.variant,
        detail: err.detail,
        ...(err.reason !== undefined ? { reason: err.reason } : {}),
      });
      core.log(`${endpoint}: ${err.status} ${err.variant}: ${err.reason ?? err.detail}`);
      reply = { status: err.status, headers: {}, body: err.body() };
    }

    if (endpoint === "auth" && "set-cookie" in reply.headers && f.stripSessionCookie > 0) {
      f.stripSessionCookie--;
      ev.fault = "strip-cookie";
      const { "set-cookie": _stripped, ...kept } = reply.headers;
      reply = { ...reply, headers: kept };
    }
    const broken = endpoint !== "other" ? f.malformed[endpoint] : undefined;
    if (take(broken)) {
      ev.fault = `malformed:${broken!.mode}`;
      const short = malformedBody(reply.body, broken!.mode);
      if (broken!.mode === "short-body") {
        ev.status = reply.status;
        res.writeHead(reply.status, { ...reply.headers, "content-length": Buffer.byteLength(reply.body) });
        res.write(short, () => req.socket.destroy());
        return;
      }
      if (broken!.mode === "slow") return drip(res, ev, reply);
      if (broken!.mode === "redirect") return send(res, ev, { status: 302, headers: { location: path }, body: "" });
      reply = { ...reply, body: short };
    }
    send(res, ev, reply);
  }

  // One fresh server object per listen, so the port can be closed and reopened (refuseConnections).
  let server: http.Server | undefined;
  const sockets = new Set<Socket>();
  let port = opts.port ?? 0;
  let reopenTimer: NodeJS.Timeout | undefined;

  const onRequest = (req: http.IncomingMessage, res: http.ServerResponse) => {
    handle(req, res).catch((e) => {
      core.log(`internal error: ${(e as Error).stack ?? e}`);
      if (!res.headersSent) res.writeHead(500).end();
      else res.destroy();
    });
  };

  async function listen(): Promise<void> {
    if (server) return;
    const s = opts.tls
      ? https.createServer({ key: opts.tls.keyPem, cert: opts.tls.certPem }, onRequest)
      : http.createServer(onRequest);
    s.on("connection", (sock: Socket) => {
      sockets.add(sock);
      sock.on("close", () => sockets.delete(sock));
    });
    s.on("tlsClientError", () => {}); // a client rejecting our CA is expected in tests
    await new Promise<void>((res, rej) => s.once("error", rej).listen(port, host, res));
    port = (s.address() as AddressInfo).port;
    server = s;
  }

  async function unlisten(): Promise<void> {
    const s = server;
    if (!s) return;
    server = undefined;
    const closed = new Promise<void>((res) => s.close(() => res()));
    for (const sock of sockets) sock.destroy();
    await closed;
  }

  if (opts.listenDelayMs && opts.listenDelayMs > 0) {
    if (port === 0) port = await freePort(host);
    reopenTimer = setTimeout(
      () => void listen().catch((e) => core.log(`late listen failed: ${e}`)),
      opts.listenDelayMs,
    );
  } else {
    await listen();
  }

  const scheme = opts.tls ? "https" : "http";
  const urlHost = host.includes(":") ? `[${host}]` : host;
  const kbs: TestKbs = {
    url: `${scheme}://${urlHost}:${port}`,
    host,
    port,
    caPem: opts.tls?.caPem,
    resources: core.resources,
    setResource: (p, v) => void core.resources.set(p, toBytes(v)),
    deleteResource: (p) => void core.resources.delete(p),
    expireToken: (t) => void core.expiredTokens.add(t),
    setPolicy: (p) => void (core.policy = p),
    get policyText() {
      return core.policyText;
    },
    get faults() {
      return core.faults;
    },
    set faults(f: Faults) {
      core.faults = f;
    },
    get stats() {
      return core.stats;
    },
    resetStats: () => void (core.stats = emptyStats()),
    expireSessions: () => core.sessions.expire(),
    async refuseConnections(forMs?: number) {
      clearTimeout(reopenTimer);
      await unlisten();
      if (forMs !== undefined)
        reopenTimer = setTimeout(() => void listen().catch((e) => core.log(`reopen failed: ${e}`)), forMs);
    },
    acceptConnections: async () => {
      clearTimeout(reopenTimer);
      await listen();
    },
    get listening() {
      return server !== undefined;
    },
    tokenJwk: core.issuer.jwk,
    async close() {
      clearTimeout(reopenTimer);
      await unlisten();
    },
  };
  return kbs;
}
