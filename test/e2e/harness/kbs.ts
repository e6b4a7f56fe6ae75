// The test KBS as the VM boot tests run it: on the host loopback at the manifest's port (the guest
// reaches it as https://10.0.2.2:PORT), TLS from setup.sh, tee `tpm` only, trusting only the AK
// provisioned into the swtpm template.
import * as fs from "node:fs";
import * as path from "node:path";
import { startTestKbs, type TestKbs } from "../../kbs/server.ts";
import { tpmVerifierTrusting } from "../../kbs/verifiers/tpm.ts";
import type { E2eManifest } from "./manifest.ts";

export function startE2eKbs(m: E2eManifest, resources: Record<string, Uint8Array>): Promise<TestKbs> {
  const tls = (f: string) => fs.readFileSync(path.join(m.tlsDir, f), "utf8");
  return startTestKbs({
    host: "127.0.0.1",
    port: m.kbsPort,
    tls: { keyPem: tls("server.key"), certPem: tls("server.pem"), caPem: tls("ca.pem") },
    resources,
    allowTees: ["tpm"],
    verifiers: { tpm: tpmVerifierTrusting([fs.readFileSync(m.akPem, "utf8")]) },
    policy: "allow",
  });
}
