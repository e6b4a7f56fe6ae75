// `cvm-unlock fetch` (compiled binary) where the host or a careless unit file would catch the
// secret: stdout connected to the journal ($JOURNAL_STREAM), and a config without a pinned CA
// (the public web PKI), which must be announced like insecure_http.
import * as crypto from "node:crypto";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { EXIT_CODES } from "../../platform/util/errors.ts";
import { BINARY, ensureBinary, runCli } from "../helpers/binary.ts";
import { createPki, type Pki } from "../helpers/pki.ts";
import { startTestKbs, type TestKbs } from "../kbs/server.ts";

const RESOURCE = "default/key/root";
const SECRET = crypto.randomBytes(32);
let pki: Pki;
let kbs: TestKbs;
let work: string;
let journalWrapper: string;

beforeAll(async () => {
  ensureBinary();
  pki = createPki();
  work = fs.mkdtempSync(path.join(os.tmpdir(), "fetch-hostile-"));
  kbs = await startTestKbs({ tls: pki.tls, resources: { [RESOURCE]: SECRET } });
  // systemd's StandardOutput=journal: $JOURNAL_STREAM names the device:inode of the stream on fd 1.
  // The wrapper sets it to whatever stdout (a socketpair/pipe from the test) really is.
  journalWrapper = path.join(work, "as-journal");
  fs.writeFileSync(
    journalWrapper,
    `#!/bin/bash\nexport JOURNAL_STREAM=$(stat -L -c '%d:%i' /proc/$$/fd/1)\nexec ${BINARY} "$@"\n`,
    { mode: 0o755 },
  );
});
afterAll(async () => {
  await kbs?.close();
  fs.rmSync(work, { recursive: true, force: true });
  fs.rmSync(pki.dir, { recursive: true, force: true });
});

const fetchArgs = (ca: boolean) => [
  "fetch",
  RESOURCE,
  "--kbs",
  kbs.url,
  ...(ca ? ["--ca", pki.caFile] : []),
  "--tee",
  "sample",
  "--allow-sample",
  "--deadline",
  "30",
  "--log-format",
  "text",
];

describe("fetch: where the secret may go", () => {
  it("refuses stdout when it is the journal stream, before any KBS request", async () => {
    kbs.resetStats();
    const r = await runCli(fetchArgs(true), { binary: journalWrapper });
    expect(r.code, r.stderr).toBe(EXIT_CODES.usage);
    expect(r.stderr).toMatch(/refusing to write a secret to the journal \(stdout is \$JOURNAL_STREAM\)/);
    expect(r.stdout.length).toBe(0);
    expect(kbs.stats.requests.auth).toBe(0);
  });

  it("a pipe/socketpair that is not the journal stays allowed (JOURNAL_STREAM names another stream)", async () => {
    const r = await runCli(fetchArgs(true), { env: { JOURNAL_STREAM: "1:1" } });
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout.equals(SECRET)).toBe(true);
  });
});

describe("fetch: no pinned CA", () => {
  it("warns that the public web PKI vouches for the KBS when kbs.ca_file is not set", async () => {
    const r = await runCli(fetchArgs(false));
    expect(r.code).toBe(EXIT_CODES.tls); // the test CA is not a public root
    expect(r.stderr).toMatch(/kbs.ca_file is not set: .*system roots \(public web PKI\)/);
    const pinned = await runCli(fetchArgs(true));
    expect(pinned.code, pinned.stderr).toBe(0);
    expect(pinned.stderr).not.toMatch(/kbs.ca_file is not set/);
  });
});
