// A small trustee-faithful KBS double for client unit tests (the full one lives in test/kbs/).
// It checks what trustee checks (kbs-protocol.md §1-3): exact /auth Request keys and version,
// session cookie, nonce equality, runtime-data digest recomputed from the typed tee-pubkey
// (sample TEE: base64 report_data == SHA-384 exactly), bearer token or attested cookie for the
// resource, trustee's path regex, and answers with trustee's status codes and ErrorInformation.
import { createHash, randomBytes } from "node:crypto";
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import { createServer as createHttpsServer } from "node:https";
import type { AddressInfo } from "node:net";
import type { TeePubKey } from "../../../../agent/kbs/tee-key.ts";
import { encryptToTeeKey, type FlattenedJweOut } from "./jwe-encrypt.ts";

const ERR = "https://github.com/confidential-containers/kbs/errors/";
const PATH_RE = /^([a-zA-Z0-9_-]+[a-zA-Z0-9_.-]*)\/([a-zA-Z0-9_-]+[a-zA-Z0-9_.-]*)\/([a-zA-Z0-9_-]+[a-zA-Z0-9_.-]*)$/;

export interface SeenRequest {
  method: string;
  path: string;
  headers: IncomingMessage["headers"];
  body: string;
}

export interface MiniKbsOptions {
  resources?: Record<string, Uint8Array>;
  /** Resource policy: release or deny (401 PolicyDeny). */
  allow?: boolean;
  /** The first N resource requests fail with 401 TokenVerifierError (e.g. an expired token). */
  rejectTokensFirst?: number;
  /** Omit Set-Cookie on /auth. */
  noCookie?: boolean;
  /** Mutate the JWE before sending (tampering tests). */
  tamperJwe?: (jwe: FlattenedJweOut) => FlattenedJweOut;
  tls?: { key: string; cert: string };
}

interface Session {
  nonce: string;
  tee: string;
  token?: string;
}

/** Independent canonical JSON (sorted keys, compact) for the ASCII data in runtime data. */
const canon = (v: unknown): string =>
  Array.isArray(v) ? `[${v.map(canon).join(",")}]` : v && typeof v === "object" ? `{${Object.keys(v).sort().map((k) => `${JSON.stringify(k)}:${canon((v as Record<string, unknown>)[k])}`).join(",")}}` : JSON.stringify(v);

/** trustee re-serializes tee-pubkey from its typed enum: only these members survive. */
function typedPubkey(p: Record<string, unknown>): TeePubKey | undefined {
  if (p.kty === "EC" && typeof p.crv === "string" && typeof p.x === "string" && typeof p.y === "string") return { kty: "EC", crv: p.crv, alg: p.alg, x: p.x, y: p.y } as TeePubKey;
  if (p.kty === "RSA" && typeof p.n === "string" && typeof p.e === "string") return { kty: "RSA", alg: p.alg, n: p.n, e: p.e } as TeePubKey;
  return undefined;
}

export class MiniKbs {
  readonly seen: SeenRequest[] = [];
  readonly sessions = new Map<string, Session>();
  private readonly tokens = new Map<string, TeePubKey>();
  private tokenRejections: number;
  url = "";
  private server?: ReturnType<typeof createServer>;

  constructor(readonly opts: MiniKbsOptions = {}) {
    this.tokenRejections = opts.rejectTokensFirst ?? 0;
  }

  count(path: string): number {
    return this.seen.filter((r) => r.path === path).length;
  }

  async start(): Promise<this> {
    const handler = (req: IncomingMessage, res: ServerResponse) => {
      const chunks: Buffer[] = [];
      req.on("data", (c: Buffer) => chunks.push(c));
      req.on("end", () => {
        const body = Buffer.concat(chunks).toString("utf8");
        this.seen.push({ method: req.method ?? "", path: req.url ?? "", headers: req.headers, body });
        this.handle(req, body, res);
      });
    };
    this.server = this.opts.tls ? createHttpsServer(this.opts.tls, handler) : createServer(handler);
    await new Promise<void>((r) => this.server!.listen(0, "127.0.0.1", r));
    this.url = `${this.opts.tls ? "https" : "http"}://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
    return this;
  }

  async stop(): Promise<void> {
    this.server?.closeAllConnections();
    await new Promise((r) => this.server?.close(r));
  }

  private fail(res: ServerResponse, status: number, variant: string, detail: string): void {
    res.writeHead(status).end(JSON.stringify({ type: ERR + variant, detail }));
  }

  private handle(req: IncomingMessage, body: string, res: ServerResponse): void {
    const path = req.url ?? "";
    if (req.method === "POST" && path === "/kbs/v0/auth") return this.auth(body, res);
    if (req.method === "POST" && path === "/kbs/v0/attest") return this.attest(req, body, res);
    if (req.method === "GET" && path.startsWith("/kbs/v0/resource/")) return this.resource(req, path.slice("/kbs/v0/resource/".length), res);
    return this.fail(res, 404, "PluginNotFound", `Plugin ${path.split("/")[3] ?? ""} not found`);
  }

  private auth(body: string, res: ServerResponse): void {
    let r: Record<string, unknown>;
    try {
      r = JSON.parse(body);
      if (!("version" in r && "tee" in r && "extra-params" in r)) throw new Error("missing field");
    } catch {
      return this.fail(res, 401, "AttestationError", "Attestation error: RCAR handshake Auth failed: deserialize Request");
    }
    if (r.version !== "0.4.0")
      return this.fail(res, 401, "AttestationError", `Attestation error: RCAR handshake Auth failed: KBS Client Protocol Version Mismatch: expect =0.4.0 while the request is ${String(r.version)}`);
    const id = randomBytes(16).toString("hex");
    const nonce = randomBytes(32).toString("base64");
    this.sessions.set(id, { nonce, tee: String(r.tee) });
    // Expires in the past on purpose: a client that trusts its cookie jar/clock would drop it.
    const headers: Record<string, string> = { "content-type": "application/json" };
    if (!this.opts.noCookie) headers["set-cookie"] = `kbs-session-id=${id}; Expires=Thu, 01 Jan 1970 00:00:00 GMT`;
    res.writeHead(200, headers).end(JSON.stringify({ nonce, "extra-params": "" }));
  }

  private attest(req: IncomingMessage, body: string, res: ServerResponse): void {
    const failed = () => this.fail(res, 401, "AttestationError", "Attestation error: RCAR handshake Attest failed");
    const id = /(?:^|;\s*)kbs-session-id=([^;]+)/.exec(req.headers.cookie ?? "")?.[1];
    const session = id ? this.sessions.get(id) : undefined;
    if (!session) return failed();
    if (session.token) return void res.writeHead(200).end(JSON.stringify({ token: session.token }));
    let a: Record<string, any>;
    try {
      a = JSON.parse(body);
    } catch {
      return failed();
    }
    const rd = a["runtime-data"];
    const te = a["tee-evidence"];
    if (!rd || !te || !("init-data" in a) || typeof te.additional_evidence !== "string" || te.primary_evidence === undefined) return failed();
    if (a["init-data"] !== null && (a["init-data"].format !== "toml" || typeof a["init-data"].body !== "string")) return failed();
    if (rd.nonce !== session.nonce) return failed();
    const tpk = typedPubkey(rd["tee-pubkey"] ?? {});
    if (!tpk) return failed();
    const expected = createHash("sha384").update(canon({ "tee-pubkey": tpk, nonce: session.nonce, "additional-evidence": te.additional_evidence })).digest();
    if (session.tee !== "sample" || typeof te.primary_evidence.report_data !== "string") return failed();
    if (!Buffer.from(te.primary_evidence.report_data, "base64").equals(expected)) return failed();
    const token = ["eyJhbGciOiJFUzI1NiJ9", Buffer.from(JSON.stringify({ n: randomBytes(8).toString("hex") })).toString("base64url"), "c2ln"].join(".");
    session.token = token;
    this.tokens.set(token, tpk);
    res.writeHead(200, { "set-cookie": `kbs-session-id=${id}`, "content-type": "application/json" }).end(JSON.stringify({ token }));
  }

  private resource(req: IncomingMessage, path: string, res: ServerResponse): void {
    const id = /(?:^|;\s*)kbs-session-id=([^;]+)/.exec(req.headers.cookie ?? "")?.[1];
    const viaCookie = id ? this.sessions.get(id)?.token : undefined;
    const bearer = /^Bearer (.+)$/.exec(req.headers.authorization ?? "")?.[1];
    const token = viaCookie ?? bearer;
    const tpk = token ? this.tokens.get(token) : undefined;
    if (!tpk) return this.fail(res, 401, "TokenNotFound", "Attestation Token not found");
    if (this.tokenRejections > 0) {
      this.tokenRejections--;
      return this.fail(res, 401, "TokenVerifierError", "Token Verifier error");
    }
    if (this.opts.allow === false) return this.fail(res, 401, "PolicyDeny", "Access denied by policy");
    if (!PATH_RE.test(path)) return this.fail(res, 401, "PluginInternalError", "Plugin internal error");
    const secret = this.opts.resources?.[path];
    if (!secret) return this.fail(res, 401, "PluginInternalError", "Plugin internal error" /* trustee keeps the cause in its log */);
    let jwe = encryptToTeeKey(tpk, secret);
    if (this.opts.tamperJwe) jwe = this.opts.tamperJwe(jwe);
    res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify(jwe));
  }
}
