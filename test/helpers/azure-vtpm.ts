// An Azure CVM vTPM for tests: swtpm provisioned like Azure's (RSA AK persisted at 0x81000003,
// HCL report in NV 0x01400001, owner read/write), behind a TCP proxy that plays the paravisor.
// The proxy forwards the agent's raw TPM commands to swtpm (one upstream connection, commands
// serialised on one lane) and, when an NV_Write to 0x01400002 succeeds, regenerates the HCL
// report with user-data = what the guest wrote (and REPORT_DATA = SHA-256 of the new claims),
// writing it into 0x01400001 between two agent commands — immediately, after a delay, or never.
// Point the agent at it with --tpm swtpm:127.0.0.1:<proxyPort>.
import { createPublicKey } from "node:crypto";
import * as net from "node:net";
import type { AddressInfo } from "node:net";
import { Deadline } from "../../platform/util/deadline.ts";
import { silentLogger } from "../../platform/util/log.ts";
import { withTpm } from "../../platform/tpm/client.ts";
import { TPMA_NV, TPM_ALG, TPM_CC, TPM_RH } from "../../platform/tpm/constants.ts";
import { encodeNvWrite } from "../../platform/tpm/commands/nv.ts";
import { nvDefine, nvWrite, readPublic } from "../../platform/tpm/operations.ts";
import { publicToSpkiDer } from "../../platform/tpm/attestation/keys.ts";
import { parseResponseHeader } from "../../platform/tpm/marshal.ts";
import { openSocket } from "../../platform/tpm/transport/socket.ts";
import type { TpmTransport } from "../../platform/tpm/transport/types.ts";
import { AZURE_AK_HANDLE, HCL_REPORT_NV_INDEX, REPORT_DATA_NV_INDEX } from "../../platform/azure/constants.ts";
import { buildHclReport, type HclTee, type RsaPublicJwk } from "./azure-hcl.ts";
import { testPki, type TestPki } from "./snp-fixtures.ts";
import { startSwtpm, type Swtpm } from "./swtpm.ts";

/** When the paravisor stand-in refreshes the HCL report after a report-data write. */
export type RefreshMode = { kind: "immediate" } | { kind: "delayed"; ms: number } | { kind: "never" };

export interface AzureVtpmOptions {
  tee: HclTee;
  refresh?: RefreshMode;
  /** NV size of 0x01400001. Azure uses 2048 or 2600; libtpms caps an NV index at 2048 (TPM_PT_NV_INDEX_MAX). */
  nvSize?: number;
}

export interface AzureVtpm {
  tee: HclTee;
  /** --tpm value for the agent: the proxy. */
  spec: string;
  swtpm: Swtpm;
  akPub: RsaPublicJwk;
  pki: TestPki;
  /** Size of NV 0x01400001. */
  nvSize: number;
  /** Report-data writes the paravisor saw (hex of the index content after each write). */
  writesSeen: string[];
  refreshes: number;
  setRefresh(mode: RefreshMode): void;
  /** Replace the HCL report NV content with arbitrary bytes (hostile-input tests). */
  setHclBlob(blob: Uint8Array): Promise<void>;
  /** Rebuild a valid HCL report with this user-data. */
  resetHcl(userData?: Uint8Array): Promise<void>;
  stop(): Promise<void>;
}

const HEADER = 10;
const MAX_FRAME = 4096;
const UPSTREAM_TIMEOUT_MS = 30_000;

/** One upstream connection to swtpm's data port (the agent's own socket transport); exchanges are serialised. */
class Upstream {
  private lane: Promise<unknown> = Promise.resolve();
  private constructor(private readonly transport: TpmTransport) {}
  static async connect(port: number): Promise<Upstream> {
    return new Upstream(await openSocket({ host: "127.0.0.1", port }, UPSTREAM_TIMEOUT_MS));
  }
  /** Run `fn` alone on the lane (an agent command, or a whole HCL rewrite). */
  exclusive<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.lane.then(fn, fn);
    this.lane = run.catch(() => {});
    return run;
  }
  /** Must be called inside exclusive(). */
  async transact(cmd: Uint8Array): Promise<Buffer> {
    return Buffer.from(await this.transport.transmit(cmd, UPSTREAM_TIMEOUT_MS));
  }
  close(): void {
    this.transport.close();
  }
}

const rcOf = (rsp: Uint8Array): number => parseResponseHeader(rsp).rc;

/** The data and offset of an NV_Write command to `index`, or undefined for any other command. */
function nvWriteTo(cmd: Buffer, index: number): { data: Buffer; offset: number } | undefined {
  if (cmd.length < 22 || cmd.readUInt32BE(6) !== TPM_CC.NV_Write || cmd.readUInt32BE(14) !== index) return undefined;
  const authSize = cmd.readUInt32BE(18);
  let o = 22 + authSize;
  const n = cmd.readUInt16BE(o);
  const data = cmd.subarray(o + 2, o + 2 + n);
  o += 2 + n;
  return { data: Buffer.from(data), offset: cmd.readUInt16BE(o) };
}

function isUndefineOf(cmd: Buffer, index: number): boolean {
  return cmd.length >= 18 && cmd.readUInt32BE(6) === TPM_CC.NV_UndefineSpace && cmd.readUInt32BE(14) === index;
}

export async function startAzureVtpm(o: AzureVtpmOptions): Promise<AzureVtpm> {
  const swtpm = await startSwtpm({ ekCerts: false, pcrBanks: "sha256" });
  const pki = testPki();
  const nvSize = o.nvSize ?? 2048;
  let refresh: RefreshMode = o.refresh ?? { kind: "immediate" };
  let akPub!: RsaPublicJwk;

  // Provisioning, as Azure's host does before the guest boots: AK at 0x81000003, HCL report NV.
  await swtpm.persistAk(AZURE_AK_HANDLE);
  const setup = new Deadline(60_000);
  try {
    await withTpm(swtpm.spec, setup, silentLogger, async (tpm) => {
      const pub = (await readPublic(tpm, AZURE_AK_HANDLE)).publicArea;
      if (pub.type !== TPM_ALG.RSA) throw new Error("AK is not RSA");
      const jwk = createPublicKey({ key: Buffer.from(publicToSpkiDer(pub)), format: "der", type: "spki" }).export({
        format: "jwk",
      });
      akPub = { kty: "RSA", n: jwk.n!, e: jwk.e! };
      await nvDefine(tpm, {
        index: HCL_REPORT_NV_INDEX,
        size: nvSize,
        attributes: TPMA_NV.OWNERWRITE | TPMA_NV.OWNERREAD | TPMA_NV.NO_DA,
      });
      await nvWrite(
        tpm,
        HCL_REPORT_NV_INDEX,
        buildHclReport({ tee: o.tee, akPub, userData: new Uint8Array(64), pki, nvSize }),
      );
    });
  } finally {
    setup.dispose();
  }

  const upstream = await Upstream.connect(swtpm.port);
  const writesSeen: string[] = [];
  let reportDataContent = new Uint8Array(0);
  const state = { refreshes: 0 };

  /** Write `blob` into NV 0x01400001 with owner auth, in 1 KiB chunks (inside the lane). */
  async function writeHclNv(blob: Uint8Array): Promise<void> {
    for (let off = 0; off < blob.length; off += 1024) {
      const rsp = await upstream.transact(
        encodeNvWrite(TPM_RH.OWNER, HCL_REPORT_NV_INDEX, blob.subarray(off, off + 1024), off),
      );
      if (rcOf(rsp) !== 0)
        throw new Error(`paravisor stand-in: NV_Write of the HCL report failed rc 0x${rcOf(rsp).toString(16)}`);
    }
  }
  const regenerate = (userData: Uint8Array) => writeHclNv(buildHclReport({ tee: o.tee, akPub, userData, pki, nvSize }));

  function afterReportDataWrite(): Promise<void> | undefined {
    const userData = reportDataContent.slice();
    const done = () => {
      state.refreshes++;
    };
    if (refresh.kind === "immediate") return regenerate(userData).then(done);
    if (refresh.kind === "delayed") {
      const t = setTimeout(
        () => void upstream.exclusive(() => regenerate(userData).then(done)).catch(() => {}),
        refresh.ms,
      );
      t.unref?.();
    }
    return undefined;
  }

  const clients = new Set<net.Socket>();
  const server = net.createServer((client) => {
    clients.add(client);
    let pending = Buffer.alloc(0);
    let busy = Promise.resolve();
    client.on("close", () => clients.delete(client));
    client.on("error", () => {});
    client.on("data", (d: Buffer) => {
      pending = Buffer.concat([pending, d]);
      while (pending.length >= HEADER) {
        const size = pending.readUInt32BE(2);
        if (size < HEADER || size > MAX_FRAME) return void client.destroy();
        if (pending.length < size) break;
        const cmd = Buffer.from(pending.subarray(0, size));
        pending = pending.subarray(size);
        busy = busy.then(() =>
          upstream.exclusive(async () => {
            const rsp = await upstream.transact(cmd);
            if (isUndefineOf(cmd, REPORT_DATA_NV_INDEX) && rcOf(rsp) === 0) reportDataContent = new Uint8Array(0);
            const w = nvWriteTo(cmd, REPORT_DATA_NV_INDEX);
            if (w && rcOf(rsp) === 0) {
              const end = w.offset + w.data.length;
              if (reportDataContent.length < end) {
                const grown = new Uint8Array(end);
                grown.set(reportDataContent);
                reportDataContent = grown;
              }
              reportDataContent.set(w.data, w.offset);
              writesSeen.push(Buffer.from(reportDataContent).toString("hex"));
              await afterReportDataWrite();
            }
            if (!client.destroyed) client.write(rsp);
          }),
        );
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const proxyPort = (server.address() as AddressInfo).port;

  return {
    tee: o.tee,
    spec: `swtpm:127.0.0.1:${proxyPort}`,
    swtpm,
    akPub,
    pki,
    nvSize,
    writesSeen,
    get refreshes() {
      return state.refreshes;
    },
    setRefresh(mode) {
      refresh = mode;
    },
    setHclBlob(blob) {
      return upstream.exclusive(() => writeHclNv(blob));
    },
    resetHcl(userData = new Uint8Array(64)) {
      return upstream.exclusive(() => regenerate(userData));
    },
    async stop() {
      for (const c of clients) c.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      upstream.close();
      await swtpm.stop();
    },
  };
}
