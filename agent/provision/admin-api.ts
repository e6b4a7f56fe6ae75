// trustee's admin API as kbs-client uses it (tools/kbs-client/src/lib.rs, kbs/src/api_server.rs):
//   POST /kbs/v0/resource/<repo>/<type>/<tag>   raw bytes, Content-Type application/octet-stream
//   POST /kbs/v0/resource-policy                 {"policy": "<base64url, no padding, of the rego>"}
// both with `Authorization: Bearer <admin JWT>` (or none, for a KBS in InsecureAllowAll mode).
// Success is HTTP 200 with an empty body; every refusal is 401 with an ErrorInformation body.
import { b64url, utf8 } from "../../platform/util/bytes.ts";
import { CvmError } from "../../platform/util/errors.ts";
import { parseErrorInformation } from "../kbs/error-info.ts";
import { retry } from "../../platform/util/retry.ts";
import type { Deadline } from "../../platform/util/deadline.ts";
import type { KbsConnection, KbsHttpRequest, KbsHttpResponse } from "../kbs/transport.ts";

/** A 503 or a dropped connection is retried a few times; a refusal never is. */
const ADMIN_ATTEMPTS = 3;

/** Resource policies are a few KiB; trustee's whole request limit is 2 MiB. */
export const MAX_POLICY_BYTES = 256 * 1024;

export class KbsAdmin {
  constructor(
    private readonly connection: KbsConnection,
    private readonly token: string | undefined,
    private readonly deadline: Deadline,
  ) {}

  get endpoint(): string {
    return this.connection.endpoint;
  }

  private async send(req: KbsHttpRequest): Promise<KbsHttpResponse> {
    const doing = `${req.what} at ${this.endpoint}`;
    const exhausted = (e: Error, n: number) =>
      new CvmError("network", `${doing} failed ${n} time(s); last: ${e.message}`, {
        hint: "check that the KBS admin endpoint is up and reachable",
      });
    const opts = { deadline: this.deadline, doing, maxAttempts: ADMIN_ATTEMPTS, exhausted };
    return (await retry(opts, () => this.connection.request(req))).value;
  }

  private headers(): Record<string, string> {
    return this.token !== undefined ? { authorization: `Bearer ${this.token}` } : {};
  }

  /** Store `value` as the resource (replaces what was there: trustee keeps one value per path). */
  async putResource(path: string, value: Uint8Array): Promise<void> {
    const res = await this.send({
      method: "POST",
      path: `/kbs/v0/resource/${path}`,
      headers: this.headers(),
      body: value,
      contentType: "application/octet-stream",
      what: "admin resource upload",
    });
    this.check(res, `uploading resource ${path}`);
  }

  /** Replace the KBS-wide resource policy. */
  async setResourcePolicy(rego: string): Promise<void> {
    const bytes = utf8(rego);
    if (bytes.length > MAX_POLICY_BYTES)
      throw new CvmError("usage", `the resource policy is ${bytes.length} bytes, over ${MAX_POLICY_BYTES}`);
    const res = await this.send({
      method: "POST",
      path: "/kbs/v0/resource-policy",
      headers: this.headers(),
      body: JSON.stringify({ policy: b64url(bytes) }),
      what: "admin resource policy",
    });
    this.check(res, "setting the resource policy");
  }

  private check(res: KbsHttpResponse, doing: string): void {
    if (res.status === 200) return;
    const info = parseErrorInformation(res.body);
    const said = info ? `: ${info.variant}: ${info.detail}` : "";
    const at = `KBS ${this.endpoint} (${doing}, HTTP ${res.status})`;
    if (info && /^AdminAuth/.test(info.variant))
      throw new CvmError("kbs-refused", `${at} refused the admin credentials${said}`, {
        hint:
          this.token === undefined
            ? "this KBS requires an admin token: give --admin-key FILE or --admin-token-file FILE"
            : "the KBS must list the public half of --admin-key under [admin.authentication.bearer_jwt] identity_providers " +
              "(with matching issuer/audience when it names them), and its regex_acl must allow the token's role on this path",
      });
    if (!info)
      throw new CvmError("kbs-protocol", `${at} answered something that is not a trustee ErrorInformation`, {
        hint: "check that the endpoint is a trustee KBS (>= v0.21 for AuthenticatedAuthorization) and its URL prefix",
      });
    throw new CvmError("kbs-refused", `${at} refused${said}`, { hint: "see the KBS server log" });
  }
}
