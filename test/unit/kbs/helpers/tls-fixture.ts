// Throwaway PKI made with the openssl CLI in a temp dir: a CA, a server cert for
// 127.0.0.1/localhost, a cert from the same CA for another host name only, and an unrelated CA.
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

export interface TestPki {
  caPem: string;
  wrongCaPem: string;
  /** Valid for IP:127.0.0.1 and DNS:localhost. */
  server: { key: string; cert: string };
  /** Same CA, valid only for DNS:attest.example. */
  otherHost: { key: string; cert: string };
  cleanup(): void;
}

export function makeTestPki(): TestPki {
  const dir = mkdtempSync(join(tmpdir(), "kbs-pki-"));
  const ssl = (...args: string[]) => execFileSync("openssl", args, { cwd: dir, stdio: ["ignore", "ignore", "pipe"] });
  const ca = (name: string) =>
    ssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", `${name}.key`, "-out", `${name}.pem`, "-subj", "/CN=cvm-unlock test CA", "-days", "2");
  const leaf = (name: string, san: string) => {
    writeFileSync(join(dir, `${name}.ext`), `subjectAltName=${san}\nextendedKeyUsage=serverAuth\n`);
    ssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", `${name}.key`, "-out", `${name}.csr`, "-subj", `/CN=${name}`);
    ssl("x509", "-req", "-in", `${name}.csr`, "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial", "-out", `${name}.pem`, "-days", "2", "-extfile", `${name}.ext`);
    return { key: readFileSync(join(dir, `${name}.key`), "utf8"), cert: readFileSync(join(dir, `${name}.pem`), "utf8") };
  };
  ca("ca");
  ca("wrongca"); // same subject DN as the real CA, different key
  const server = leaf("server", "IP:127.0.0.1,DNS:localhost");
  const otherHost = leaf("other", "DNS:attest.example");
  return {
    caPem: readFileSync(join(dir, "ca.pem"), "utf8"),
    wrongCaPem: readFileSync(join(dir, "wrongca.pem"), "utf8"),
    server,
    otherHost,
    cleanup: () => rmSync(dir, { recursive: true, force: true }),
  };
}
