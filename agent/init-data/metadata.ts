// init-data from a cloud's instance metadata service, where a CVM gets its user data. Link-local,
// plain HTTP (the service has no TLS), so its answer is as host-controlled as SMBIOS: it is used
// only through the init-data digest binding. Each read is short and bounded; "not there" (404,
// connection refused, timeout) means "no init-data here", so the next channel is tried.
import * as http from "node:http";
import type { Deadline } from "../../platform/util/deadline.ts";
import type { Logger } from "../../platform/util/log.ts";

export type MetadataChannel = "gcp" | "azure" | "aws";

const TIMEOUT_MS = 2000;
const MAX_BODY = 96 * 1024;

interface MetadataEnv {
  metadataUrl: string;
  deadline: Deadline;
  log: Logger;
}

interface Answer {
  status: number;
  body: string;
}

function request(url: string, method: "GET" | "PUT", headers: Record<string, string>, env: MetadataEnv) {
  const timeout = Math.min(TIMEOUT_MS, env.deadline.remainingMs());
  return new Promise<Answer | undefined>((resolve) => {
    // The whole exchange, not only each idle gap: a server that trickles bytes must not stall the boot.
    const whole = setTimeout(() => {
      env.log.warning(`init-data: ${url} did not answer within ${timeout} ms; ignoring it`);
      req.destroy();
      resolve(undefined);
    }, timeout);
    const done = (a: Answer | undefined) => {
      clearTimeout(whole);
      resolve(a);
    };
    const req = http.request(url, { method, headers, timeout }, (res) => {
      const parts: Buffer[] = [];
      let size = 0;
      res.on("data", (c: Buffer) => {
        size += c.length;
        if (size > MAX_BODY) {
          env.log.warning(`init-data: ${url} answered more than ${MAX_BODY} bytes; ignoring it`);
          req.destroy();
          done(undefined);
        } else parts.push(c);
      });
      res.on("end", () => done({ status: res.statusCode ?? 0, body: Buffer.concat(parts).toString("utf8") }));
      res.on("error", () => done(undefined));
    });
    req.on("timeout", () => req.destroy());
    req.on("error", () => done(undefined));
    req.end();
  });
}

function ok(a: Answer | undefined): string | undefined {
  return a && a.status === 200 && a.body.trim() !== "" ? a.body : undefined;
}

/** The raw user-data text (base64url init-data, maybe gzip inside), or undefined. */
export async function fetchMetadata(ch: MetadataChannel, env: MetadataEnv): Promise<string | undefined> {
  const base = env.metadataUrl.replace(/\/+$/, "");
  switch (ch) {
    case "gcp":
      return ok(
        await request(
          `${base}/computeMetadata/v1/instance/attributes/cvm-unlock-init-data`,
          "GET",
          { "Metadata-Flavor": "Google" },
          env,
        ),
      );
    case "azure":
      return ok(
        await request(
          `${base}/metadata/instance/compute/userData?api-version=2021-01-01&format=text`,
          "GET",
          { Metadata: "true" },
          env,
        ),
      );
    case "aws": {
      // IMDSv2: a session token first (PUT), then the user data with it.
      const token = ok(
        await request(`${base}/latest/api/token`, "PUT", { "X-aws-ec2-metadata-token-ttl-seconds": "60" }, env),
      );
      if (token === undefined) return undefined;
      return ok(await request(`${base}/latest/user-data`, "GET", { "X-aws-ec2-metadata-token": token.trim() }, env));
    }
  }
}
