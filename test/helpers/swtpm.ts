// A real TPM for tests: Debian's swtpm (libtpms) in socket mode on free loopback ports, with EK
// and platform certificates made by swtpm_setup + swtpm_localca in a private temp dir
// (docs/spec/tpm.md §7). Only one client may use the data port at a time: close your Tpm before
// another process (e.g. dist/cvm-unlock) connects.
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import * as fs from "node:fs";
import * as net from "node:net";
import * as os from "node:os";
import * as path from "node:path";
import { toolsAvailable } from "./tools.ts";
import { Deadline } from "../../platform/util/deadline.ts";
import { silentLogger } from "../../platform/util/log.ts";
import { TPM_RH } from "../../platform/tpm/constants.ts";
import { withTpm } from "../../platform/tpm/client.ts";
import { createPrimary, evictControl, flushContext } from "../../platform/tpm/operations.ts";
import { AK_RSA_TEMPLATE } from "../../platform/tpm/attestation/ak.ts";

export interface SwtpmOptions {
  /** Create EK (RSA + P-384) and platform certificates with swtpm_setup (default true). */
  ekCerts?: boolean;
  /** Banks swtpm_setup activates (default "sha1,sha256,sha384"). */
  pcrBanks?: string;
}

export interface Swtpm {
  port: number;
  ctrlPort: number;
  /** PlatformEnv.tpm.spec for our client: "swtpm:127.0.0.1:PORT". */
  spec: string;
  /** tpm2-tools TCTI: "swtpm:host=127.0.0.1,port=PORT". */
  tcti: string;
  dir: string;
  stateDir: string;
  /** swtpm_localca's directory (root + intermediate CA certificates). */
  caDir: string;
  /** Persist the derived RSA AK (AK_RSA_TEMPLATE, endorsement hierarchy) at `handle`. */
  persistAk(handle: number): Promise<void>;
  stop(): Promise<void>;
}

function portFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.createServer();
    s.once("error", () => resolve(false));
    s.listen(port, "127.0.0.1", () => s.close(() => resolve(true)));
  });
}

/** Two consecutive free loopback ports (tpm2-tools' swtpm TCTI expects ctrl = data + 1). */
async function freePortPair(): Promise<number> {
  for (let i = 0; i < 200; i++) {
    const p = 20000 + Math.floor(Math.random() * 40000);
    if ((await portFree(p)) && (await portFree(p + 1))) return p;
  }
  throw new Error("no free port pair for swtpm");
}

function connectsOnce(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect({ host: "127.0.0.1", port });
    s.once("connect", () => (s.destroy(), resolve(true)));
    s.once("error", () => (s.destroy(), resolve(false)));
  });
}

function manufacture(dir: string, stateDir: string, caDir: string, opts: SwtpmOptions): void {
  const caConf = path.join(dir, "ca.conf");
  const setupConf = path.join(dir, "setup.conf");
  fs.writeFileSync(
    caConf,
    `statedir = ${caDir}\nsigningkey = ${caDir}/signkey.pem\nissuercert = ${caDir}/issuercert.pem\ncertserial = ${caDir}/certserial\n`,
  );
  fs.writeFileSync(
    setupConf,
    `create_certs_tool= /usr/bin/swtpm_localca\ncreate_certs_tool_config = ${caConf}\ncreate_certs_tool_options = /etc/swtpm-localca.options\n`,
  );
  const args = [
    "--tpm2",
    "--tpmstate",
    stateDir,
    "--pcr-banks",
    opts.pcrBanks ?? "sha1,sha256,sha384",
    "--config",
    setupConf,
    "--logfile",
    path.join(dir, "setup.log"),
  ];
  if (opts.ekCerts !== false) args.push("--create-ek-cert", "--create-platform-cert", "--lock-nvram");
  const r = spawnSync("swtpm_setup", args, { encoding: "utf8", timeout: 60_000 });
  if (r.status !== 0) {
    const log = fs.existsSync(path.join(dir, "setup.log")) ? fs.readFileSync(path.join(dir, "setup.log"), "utf8") : "";
    throw new Error(`swtpm_setup failed (${r.status}): ${r.stderr}\n${log}`);
  }
}

/** Whether swtpm can be used (skips locally, fails under CI when missing). */
export function swtpmAvailable(): boolean {
  return toolsAvailable("swtpm", "swtpm_setup");
}

export async function startSwtpm(opts: SwtpmOptions = {}): Promise<Swtpm> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "swtpm-"));
  const stateDir = path.join(dir, "state");
  const caDir = path.join(dir, "ca");
  fs.mkdirSync(stateDir);
  fs.mkdirSync(caDir);
  try {
    manufacture(dir, stateDir, caDir, opts);
  } catch (e) {
    fs.rmSync(dir, { recursive: true, force: true });
    throw e;
  }

  let child: ChildProcess | undefined;
  let port = 0;
  for (let attempt = 0; attempt < 5 && !child; attempt++) {
    port = await freePortPair();
    const c = spawn(
      "swtpm",
      [
        "socket",
        "--tpm2",
        "--server",
        `type=tcp,port=${port},bindaddr=127.0.0.1`,
        "--ctrl",
        `type=tcp,port=${port + 1},bindaddr=127.0.0.1`,
        "--flags",
        "not-need-init,startup-clear",
        "--tpmstate",
        `dir=${stateDir}`,
        "--log",
        `file=${path.join(dir, "swtpm.log")},level=1`,
      ],
      { stdio: ["ignore", "ignore", "pipe"] },
    );
    let exited = false;
    c.once("exit", () => (exited = true));
    for (let i = 0; i < 100 && !exited; i++) {
      if (await connectsOnce(port + 1)) break;
      await new Promise((r) => setTimeout(r, 50));
    }
    if (!exited) child = c; // else the port was taken between the check and the bind: retry
  }
  if (!child) {
    fs.rmSync(dir, { recursive: true, force: true });
    throw new Error("swtpm did not start");
  }
  const proc = child;
  const spec = `swtpm:127.0.0.1:${port}`;

  return {
    port,
    ctrlPort: port + 1,
    spec,
    tcti: `swtpm:host=127.0.0.1,port=${port}`,
    dir,
    stateDir,
    caDir,
    async persistAk(handle: number) {
      const deadline = new Deadline(60_000);
      try {
        await withTpm(spec, deadline, silentLogger, async (tpm) => {
          const key = await createPrimary(tpm, TPM_RH.ENDORSEMENT, AK_RSA_TEMPLATE);
          try {
            await evictControl(tpm, key.handle, handle);
          } finally {
            await flushContext(tpm, key.handle);
          }
        });
      } finally {
        deadline.dispose();
      }
    },
    async stop() {
      if (proc.exitCode === null && proc.signalCode === null) {
        const exited = new Promise<void>((r) => proc.once("exit", () => r()));
        proc.kill("SIGTERM");
        const t = setTimeout(() => proc.kill("SIGKILL"), 5_000);
        await exited;
        clearTimeout(t);
      }
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}
