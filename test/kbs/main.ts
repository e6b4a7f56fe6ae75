// Standalone test KBS for the demo and the VM boot test:
//   bun test/kbs/main.ts --port N --host 127.0.0.1 --tls-dir DIR --resource default/key/root=@FILE|HEX
//        [--resource ...] [--policy allow|deny] [--allow-tee sample,tpm] [--ready-file PATH]
//        [--admin deny-all|insecure-allow-all|PUBLIC_KEY.pem [--admin-issuer ISS] [--admin-audience AUD]]
// --admin PUBLIC_KEY.pem: AuthenticatedAuthorization with that Ed25519 key, role "admin" on ^/kbs/.+$.
// Prints its URL on stdout, writes it to --ready-file (atomically) once listening, runs until SIGTERM.
// --tls-dir: generates a test CA + server cert there (ca.pem is what clients pin); without it: plain HTTP.
// Resource values are never printed.
import * as fs from "node:fs";
import * as path from "node:path";
import { parseArgs } from "node:util";
import { fromHex } from "../../platform/util/bytes.ts";
import { createPki } from "../helpers/pki.ts";
import { RESOURCE_PATH, startTestKbs, type AdminConfig, type StartOptions } from "./server.ts";

function fail(msg: string): never {
  process.stderr.write(`test-kbs: ${msg}\n`);
  process.exit(2);
}

export function parseResourceArg(arg: string, cwd = process.cwd()): [string, Uint8Array] {
  const eq = arg.indexOf("=");
  if (eq <= 0) throw new Error(`--resource ${arg.split("=")[0]}: expected REPO/TYPE/TAG=@FILE or REPO/TYPE/TAG=HEX`);
  const name = arg.slice(0, eq);
  const value = arg.slice(eq + 1);
  if (!RESOURCE_PATH.test(name)) throw new Error(`--resource ${name}: not a trustee resource path REPO/TYPE/TAG`);
  if (value.startsWith("@")) return [name, new Uint8Array(fs.readFileSync(path.resolve(cwd, value.slice(1))))];
  try {
    return [name, fromHex(value)];
  } catch {
    throw new Error(`--resource ${name}: value must be @FILE or an even-length hex string`);
  }
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      port: { type: "string", default: "0" },
      host: { type: "string", default: "127.0.0.1" },
      "tls-dir": { type: "string" },
      resource: { type: "string", multiple: true, default: [] },
      policy: { type: "string", default: "allow" },
      "allow-tee": { type: "string" },
      "legacy-azure-names": { type: "boolean", default: false },
      "ready-file": { type: "string" },
      admin: { type: "string", default: "deny-all" },
      "admin-issuer": { type: "string" },
      "admin-audience": { type: "string" },
      verbose: { type: "boolean", default: false },
      help: { type: "boolean", default: false },
    },
    strict: true,
  });
  if (values.help) {
    process.stdout.write(
      fs
        .readFileSync(new URL(import.meta.url), "utf8")
        .split("\n")
        .filter((l) => l.startsWith("//"))
        .join("\n") + "\n",
    );
    return;
  }
  const port = Number(values.port);
  if (!Number.isInteger(port) || port < 0 || port > 65535) fail(`--port ${values.port}: not a port number`);
  if (values.policy !== "allow" && values.policy !== "deny") fail(`--policy must be allow or deny`);
  const resources: Record<string, Uint8Array> = {};
  for (const r of values.resource ?? []) {
    try {
      const [k, v] = parseResourceArg(r);
      resources[k] = v;
    } catch (e) {
      fail((e as Error).message);
    }
  }
  let admin: AdminConfig;
  if (values.admin === "deny-all") admin = { mode: "DenyAll" };
  else if (values.admin === "insecure-allow-all") admin = { mode: "InsecureAllowAll" };
  else {
    let publicKeyPem = "";
    try {
      publicKeyPem = fs.readFileSync(values.admin!, "utf8");
    } catch (e) {
      fail(`--admin ${values.admin}: ${(e as Error).message}`);
    }
    admin = {
      mode: "AuthenticatedAuthorization",
      identityProviders: [
        {
          publicKeyPem,
          ...(values["admin-issuer"] ? { issuer: values["admin-issuer"] } : {}),
          ...(values["admin-audience"] ? { audience: values["admin-audience"] } : {}),
        },
      ],
      acls: [{ role: "admin", allowedEndpoints: "^/kbs/.+$" }],
    };
  }
  const opts: StartOptions = {
    admin,
    host: values.host!,
    port,
    resources,
    policy: values.policy,
    legacyAzureNames: values["legacy-azure-names"]!,
    log: (line) => process.stderr.write(`test-kbs: ${line}\n`),
  };
  if (values["allow-tee"])
    opts.allowTees = values["allow-tee"]
      .split(",")
      .map((s) => s.trim())
      .filter(Boolean);
  if (values["tls-dir"]) {
    const dir = path.resolve(values["tls-dir"]);
    const altNames = [
      "IP:127.0.0.1",
      "DNS:localhost",
      ...(values.host && values.host !== "127.0.0.1" && values.host !== "0.0.0.0"
        ? [/^[\d.]+$/.test(values.host) ? `IP:${values.host}` : `DNS:${values.host}`]
        : []),
    ];
    opts.tls = createPki({ dir, altNames }).tls;
  }
  const kbs = await startTestKbs(opts);
  process.stdout.write(`${kbs.url}\n`);
  process.stderr.write(
    `test-kbs: listening on ${kbs.url} (${Object.keys(resources).length} resources, policy ${values.policy}${opts.allowTees ? `, tees ${opts.allowTees.join(",")}` : ""})\n`,
  );
  if (values["ready-file"]) {
    const tmp = `${values["ready-file"]}.tmp-${process.pid}`;
    fs.writeFileSync(tmp, `${kbs.url}\n`);
    fs.renameSync(tmp, values["ready-file"]);
  }
  const stop = () => {
    void kbs.close().then(() => process.exit(0));
    setTimeout(() => process.exit(0), 2000).unref();
  };
  process.on("SIGTERM", stop);
  process.on("SIGINT", stop);
}

if (import.meta.main ?? process.argv[1] === new URL(import.meta.url).pathname) {
  main().catch((e) => fail((e as Error).message));
}
