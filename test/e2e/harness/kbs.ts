// The test KBS as the VM boot tests run it: on the fixed host port the guest reaches as
// https://10.0.2.2:<port>, with the e2e CA's server certificate, trusting only the AK provisioned
// into the swtpm state, releasing to an attested `tpm` guest by default.
import * as fs from "node:fs";
import * as path from "node:path";
import { startTestKbs, type StartOptions, type TestKbs } from "../../kbs/server.ts";
import { tpmVerifierTrusting } from "../../kbs/verifiers/tpm.ts";
import type { E2eManifest } from "./manifest.ts";

export function startE2eKbs(m: E2eManifest, opts: StartOptions = {}): Promise<TestKbs> {
  const tls = (f: string) => fs.readFileSync(path.join(m.tlsDir, f), "utf8");
  return startTestKbs({
    host: "127.0.0.1",
    port: m.kbsPort,
    tls: { keyPem: tls("server.key"), certPem: tls("server.pem"), caPem: tls("ca.pem") },
    allowTees: ["tpm"],
    verifiers: { tpm: tpmVerifierTrusting([fs.readFileSync(m.akPem, "utf8")]) },
    policy: "allow",
    ...opts,
  });
}
