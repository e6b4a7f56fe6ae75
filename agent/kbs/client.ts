// trustee RCAR 0.4.0 client (docs/spec/kbs-protocol.md §1): /auth -> evidence -> /attest -> resource GET
// with the attestation token as a Bearer header -> JWE decrypt. The session cookie is carried by
// hand (name=value only: its Expires is server time and must not depend on the guest clock) and
// used only for /attest; the resource request relies on the token alone, so it works behind
// replicas that do not share sessions.
import { CvmError } from "../../platform/util/errors.ts";
import { RESOURCE_PATH } from "../config/schema.ts";
import { decideOnKbsError, parseErrorInformation, type ErrorDecision, type KbsPhase } from "./error-info.ts";
import { decryptResourceJwe } from "./jwe.ts";
import { runtimeDigest, selectHashAlgorithm, type RuntimeData } from "./runtime-data.ts";
import { generateTeeKey, type TeeKeyPair } from "./tee-key.ts";
import { endpointUrl, KbsTransport, tryEndpoints, type KbsHttpResponse } from "./transport.ts";
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

type Attempt = { secret: Buffer } | { refused: ErrorDecision };

/** One KBS conversation: a fresh handshake, then the resource. */
class RcarSession {
  constructor(
    private readonly opts: KbsClientOptions,
    private readonly transport: KbsTransport,
    private readonly attester: Attester,
    private readonly key: TeeKeyPair,
    private readonly endpoint: string,
    private readonly resourcePath: string,
  ) {}

  private refused(phase: KbsPhase, res: KbsHttpResponse): Attempt {
    return {
      refused: decideOnKbsError(phase, res.status, parseErrorInformation(res.body), this.endpoint, this.resourcePath),
    };
  }

  async run(): Promise<Attempt> {
    const { opts, transport, endpoint, attester } = this;
    const { log, timeline } = opts;

    log.info("kbs: requesting challenge", { endpoint, tee: attester.tee });
    const auth = await timeline.time("auth", () =>
      transport.request(endpoint, {
        method: "POST",
        path: "/kbs/v0/auth",
        body: authRequestBody(attester.tee),
        what: "auth",
      }),
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
      transport.request(endpoint, {
        method: "POST",
        path: "/kbs/v0/attest",
        body: attestBody,
        headers: { cookie },
        what: "attest",
      }),
    );
    if (attest.status !== 200) return this.refused("attest", attest);
    const token = parseToken(attest.body, endpoint);
    log.info("kbs: attestation accepted", { endpoint, token_chars: token.length });

    const res = await timeline.time("resource", () =>
      transport.request(endpoint, {
        method: "GET",
        path: `/kbs/v0/resource/${this.resourcePath}`,
        headers: { authorization: `Bearer ${token}` },
        what: "resource",
      }),
    );
    if (res.status !== 200) return this.refused("resource", res);
    const jwe = parseJson(res.body, endpoint, "resource");
    log.debug("kbs: resource received, decrypting", { jwe_bytes: res.body.length });
    const secret = await timeline.time("decrypt", () => decryptResourceJwe(jwe, this.key));
    if (secret.length === 0)
      throw new CvmError("resource-missing", `KBS ${endpoint} released resource ${this.resourcePath} but it is empty`, {
        hint: "upload the real secret to the KBS",
      });
    return { secret };
  }
}

/**
 * Attest to the KBS and fetch one resource (REPO/TYPE/TAG). Endpoints are tried in order while
 * unreachable; a refusal is final except where a fresh handshake may help (expired session or
 * token, trustee's 401 for a missing resource), bounded by opts.resourceAttempts.
 */
export async function fetchResource(
  opts: KbsClientOptions,
  attester: Attester,
  resourcePath: string,
): Promise<FetchedSecret> {
  if (!RESOURCE_PATH.test(resourcePath))
    throw new CvmError("config", `resource path '${resourcePath}' is not REPO/TYPE/TAG as trustee accepts it`, {
      hint: "three segments of [A-Za-z0-9_-] followed by [A-Za-z0-9_.-]*, e.g. default/luks/root",
    });
  for (const endpoint of opts.endpoints) endpointUrl(endpoint, "/", opts.insecureHttp); // refuse bad config before any I/O

  const keygenStart = performance.now();
  const key = await generateTeeKey(opts.teeKey);
  opts.log.debug("kbs: ephemeral TEE key generated", {
    type: opts.teeKey,
    ms: Math.round(performance.now() - keygenStart),
  });
  const transport = new KbsTransport({
    caPem: opts.caPem,
    insecureHttp: opts.insecureHttp,
    requestTimeoutMs: opts.requestTimeoutMs,
    attemptsPerEndpoint: opts.attemptsPerEndpoint,
    deadline: opts.deadline,
    log: opts.log,
  });
  const handshakes = Math.max(1, opts.resourceAttempts);
  try {
    return await tryEndpoints(opts.endpoints, opts.log, async (endpoint) => {
      for (let attempt = 1; ; attempt++) {
        const outcome = await new RcarSession(opts, transport, attester, key, endpoint, resourcePath).run();
        if ("secret" in outcome) {
          opts.log.info("kbs: resource released", { endpoint, resource: resourcePath });
          return { secret: outcome.secret, endpoint };
        }
        const { rehandshake, error } = outcome.refused;
        if (!rehandshake || attempt >= handshakes) throw error;
        opts.log.warning(`kbs: ${error.message}; new handshake ${attempt + 1}/${handshakes}`, { endpoint });
      }
    });
  } finally {
    await transport.close();
  }
}
