// The KBS side of `bind`: the upload through trustee's admin API, or, without admin credentials,
// the value on the caller's descriptor and exactly what to upload where.
import * as fs from "node:fs";
import type { Deadline } from "../../platform/util/deadline.ts";
import { CvmError, errorMessage } from "../../platform/util/errors.ts";
import type { CommandIO } from "../cli/command.ts";
import { KbsTransport } from "../kbs/transport.ts";
import { KbsAdmin } from "./admin-api.ts";
import type { Plan } from "./bind-plan.ts";

/** Store `value` at the KBS (upload, or write to --key-out-fd and print the instructions). */
export async function deliverToKbs(plan: Plan, value: Uint8Array, deadline: Deadline, io: CommandIO): Promise<void> {
  if (plan.credentials === "fd") {
    writeAll(plan.keyOutFd!, value);
    printManualUpload(plan, value.length, io);
  } else await upload(plan, plan.credentials.token, value, deadline, io);
}

function writeAll(fd: number, data: Uint8Array): void {
  let off = 0;
  while (off < data.length) off += fs.writeSync(fd, data, off, data.length - off);
}

/** Where and how to reach trustee's admin API. */
export interface AdminTarget {
  url: string;
  caPem: string | undefined;
  insecureHttp: boolean;
  /** undefined: anonymous (a KBS in InsecureAllowAll mode). */
  token: string | undefined;
}

/** Run `fn` with an admin client on one connection, closed afterwards. */
export async function withKbsAdmin(
  target: AdminTarget,
  deadline: Deadline,
  fn: (admin: KbsAdmin) => Promise<void>,
): Promise<void> {
  const transport = new KbsTransport({
    ...(target.caPem !== undefined ? { caPem: target.caPem } : {}),
    insecureHttp: target.insecureHttp,
    requestTimeoutMs: 30_000,
    deadline,
  });
  const connection = transport.connect(target.url);
  try {
    await fn(new KbsAdmin(connection, target.token, deadline));
  } finally {
    await connection.close();
  }
}

async function upload(plan: Plan, token: string | undefined, value: Uint8Array, deadline: Deadline, io: CommandIO) {
  const target = { url: plan.adminUrl, caPem: plan.caPem, insecureHttp: plan.insecureHttp, token };
  await withKbsAdmin(target, deadline, async (admin) => {
    await admin.putResource(plan.token.resource, value);
    io.stdout.write(`${plan.adminUrl}: resource ${plan.token.resource} stored (${value.length} bytes)\n`);
    if (plan.policy !== undefined) {
      try {
        await admin.setResourcePolicy(plan.policy);
      } catch (e) {
        throw new CvmError(
          e instanceof CvmError ? e.kind : "internal",
          `${errorMessage(e)}. The resource was stored but the volume was not changed`,
          { hint: "fix the cause and run bind again (it replaces the resource)", cause: e },
        );
      }
      io.stdout.write(`${plan.adminUrl}: resource policy set (it replaces the KBS-wide policy):\n${plan.policy}`);
    } else
      // trustee has one resource policy for every resource: whatever it says now decides this release.
      io.log.warning(
        `resource policy unchanged: the KBS's current (KBS-wide) policy decides whether ${plan.token.resource} is released; ` +
          "check it before wiping the other keyslots (--policy or --resource-policy sets it)",
      );
  });
}

/** Without admin credentials: exactly what another tool must upload, and where. */
function printManualUpload(plan: Plan, bytes: number, io: CommandIO): void {
  const url = plan.adminUrl.replace(/\/+$/, "");
  const r = plan.token.resource;
  const cert = plan.caFile !== undefined ? ` --cert-file ${plan.caFile}` : "";
  const lines = [
    `upload: the ${bytes} bytes written to fd ${plan.keyOutFd} are the value of KBS resource ${r}:`,
    `  POST ${url}/kbs/v0/resource/${r}  (Content-Type: application/octet-stream, Authorization: Bearer <admin token>)`,
    `  or: kbs-client --url ${url}${cert} config --admin-token-file ADMIN_TOKEN set-resource --path ${r} --resource-file KEYFILE`,
  ];
  if (plan.policy !== undefined)
    lines.push(
      "policy: replaces the KBS-wide resource policy:",
      `  POST ${url}/kbs/v0/resource-policy  {"policy": "<base64url without padding of the Rego below>"}`,
      `  or: kbs-client --url ${url}${cert} config --admin-token-file ADMIN_TOKEN set-resource-policy --policy-file POLICY.rego`,
      plan.policy.trimEnd(),
    );
  io.stdout.write(`${lines.join("\n")}\n`);
}
