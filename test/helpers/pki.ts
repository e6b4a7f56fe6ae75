// Test PKI made with the openssl CLI (EC P-256, fast): a CA, a server certificate for
// IP:127.0.0.1 + DNS:localhost signed by it, an unrelated "wrong" CA, and a wrong CA with the same
// subject DN as the real one (catches clients that match CAs by name). Files go to a temp dir.
import { execFileSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";

export interface Pki {
  dir: string;
  caFile: string;
  caPem: string;
  serverKeyFile: string;
  serverKeyPem: string;
  serverCertFile: string;
  serverCertPem: string;
  wrongCaFile: string;
  wrongCaPem: string;
  sameNameWrongCaFile: string;
  sameNameWrongCaPem: string;
  /** Material for startTestKbs({ tls }). */
  tls: { keyPem: string; certPem: string; caPem: string };
}

export interface PkiOptions {
  /** Directory to write into (created); default a fresh temp dir. */
  dir?: string;
  /** subjectAltName entries; default IP:127.0.0.1, DNS:localhost. */
  altNames?: string[];
  days?: number;
  /** Validity of the server certificate only; -1 makes one that expired yesterday. */
  serverDays?: number;
}

function openssl(args: string[], cwd: string): void {
  execFileSync("openssl", args, { cwd, stdio: ["ignore", "ignore", "pipe"] });
}

const EC = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"];

function makeCa(dir: string, name: string, subject: string, days: number): void {
  openssl(
    [
      "req",
      "-x509",
      ...EC,
      "-keyout",
      `${name}.key`,
      "-out",
      `${name}.pem`,
      "-days",
      String(days),
      "-subj",
      subject,
      "-addext",
      "basicConstraints=critical,CA:TRUE",
      "-addext",
      "keyUsage=critical,keyCertSign,cRLSign",
    ],
    dir,
  );
}

export function createPki(opts: PkiOptions = {}): Pki {
  const dir = opts.dir ?? fs.mkdtempSync(path.join(os.tmpdir(), "cvm-pki-"));
  fs.mkdirSync(dir, { recursive: true });
  const days = opts.days ?? 3;
  const caSubject = "/CN=cvm-unlock test KBS CA";
  makeCa(dir, "ca", caSubject, days);
  makeCa(dir, "wrong-ca", "/CN=unrelated test CA", days);
  makeCa(dir, "same-name-wrong-ca", caSubject, days);
  const alt = (opts.altNames ?? ["IP:127.0.0.1", "DNS:localhost"]).join(",");
  fs.writeFileSync(
    path.join(dir, "server.ext"),
    `subjectAltName=${alt}\nbasicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n`,
  );
  openssl(["req", "-new", ...EC, "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=localhost"], dir);
  openssl(
    [
      "x509",
      "-req",
      "-in",
      "server.csr",
      "-CA",
      "ca.pem",
      "-CAkey",
      "ca.key",
      "-set_serial",
      `0x${Date.now().toString(16)}`,
      "-days",
      String(opts.serverDays ?? days),
      "-extfile",
      "server.ext",
      "-out",
      "server.pem",
    ],
    dir,
  );
  for (const f of ["ca.key", "wrong-ca.key", "same-name-wrong-ca.key", "server.key"])
    fs.chmodSync(path.join(dir, f), 0o600);
  const read = (f: string) => fs.readFileSync(path.join(dir, f), "utf8");
  const pki = {
    dir,
    caFile: path.join(dir, "ca.pem"),
    caPem: read("ca.pem"),
    serverKeyFile: path.join(dir, "server.key"),
    serverKeyPem: read("server.key"),
    serverCertFile: path.join(dir, "server.pem"),
    serverCertPem: read("server.pem"),
    wrongCaFile: path.join(dir, "wrong-ca.pem"),
    wrongCaPem: read("wrong-ca.pem"),
    sameNameWrongCaFile: path.join(dir, "same-name-wrong-ca.pem"),
    sameNameWrongCaPem: read("same-name-wrong-ca.pem"),
  };
  return { ...pki, tls: { keyPem: pki.serverKeyPem, certPem: pki.serverCertPem, caPem: pki.caPem } };
}
