// Transports under hostile peers: a loopback TCP server that misbehaves, FIFOs and files as devices.
import { execFileSync } from "node:child_process";
import * as fs from "node:fs";
import * as net from "node:net";
import * as os from "node:os";
import * as path from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { CvmError, ParseError } from "../../../platform/util/errors.ts";
import { openTransport, parseTpmSpec } from "../../../platform/tpm/transport/index.ts";
import type { TpmTransport } from "../../../platform/tpm/transport/types.ts";
import { frame } from "./fake-tpm.ts";

const CMD = frame(0, new Uint8Array([1, 2, 3]));
const servers: net.Server[] = [];
const transports: TpmTransport[] = [];

afterEach(() => {
  transports.splice(0).forEach((t) => t.close());
  servers.splice(0).forEach((s) => s.close());
});

/** A TCP "TPM" whose behaviour on each received command is scripted. */
async function peer(onCommand: (sock: net.Socket, data: Buffer) => void): Promise<string> {
  const server = net.createServer((sock) => {
    sock.on("error", () => {}); // the client may reset a misbehaving peer
    sock.on("data", (d) => onCommand(sock, d));
  });
  servers.push(server);
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
  return `swtpm:127.0.0.1:${(server.address() as net.AddressInfo).port}`;
}

async function open(spec: string): Promise<TpmTransport> {
  const t = await openTransport(spec, { connectTimeoutMs: 2_000 });
  transports.push(t);
  return t;
}

describe("TPM spec", () => {
  it("parses device paths, swtpm host:port (also [v6]) and unix sockets", () => {
    expect(parseTpmSpec("/dev/tpmrm0")).toEqual({ kind: "device", path: "/dev/tpmrm0" });
    expect(parseTpmSpec("swtpm:127.0.0.1:2321")).toEqual({ kind: "tcp", host: "127.0.0.1", port: 2321 });
    expect(parseTpmSpec("swtpm:[::1]:2321")).toEqual({ kind: "tcp", host: "::1", port: 2321 });
    expect(parseTpmSpec("unix:/run/swtpm.sock")).toEqual({ kind: "unix", path: "/run/swtpm.sock" });
    for (const bad of ["tpmrm0", "swtpm:host", "swtpm:host:0", "swtpm:host:70000", "mssim:127.0.0.1:2321", "unix:"])
      expect(() => parseTpmSpec(bad), bad).toThrow(/unrecognised TPM spec/);
  });
});

describe("swtpm TCP transport", () => {
  it("reassembles a response that arrives one byte at a time", async () => {
    const rsp = frame(0, new Uint8Array(100).fill(9));
    const spec = await peer((s) => {
      let i = 0;
      const tick = setInterval(() => (i < rsp.length ? s.write(Buffer.from([rsp[i++]!])) : clearInterval(tick)), 1);
    });
    const got = await (await open(spec)).transmit(CMD, 2_000);
    expect(Buffer.from(got).equals(Buffer.from(rsp))).toBe(true);
  });

  it("rejects an oversized size field as soon as the header arrives", async () => {
    const spec = await peer((s) => s.write(Buffer.from("80010010000000000000", "hex")));
    const e = await (await open(spec)).transmit(CMD, 5_000).catch((x) => x);
    expect(e).toBeInstanceOf(ParseError);
    expect(e.message).toMatch(/1048576 exceeds the 4096-byte maximum/);
  });

  it("rejects a wrong tag, and bytes beyond the declared size", async () => {
    const bad = await peer((s) => s.write(Buffer.from("c4010000000a00000000", "hex")));
    await expect((await open(bad)).transmit(CMD, 2_000)).rejects.toThrow(/0xc401 is neither/);
    const extra = await peer((s) => s.write(Buffer.concat([Buffer.from(frame(0)), Buffer.from([0xee])])));
    await expect((await open(extra)).transmit(CMD, 2_000)).rejects.toThrow(/header says 10 bytes but 11 arrived/);
  });

  it("times out on a TPM that never answers (and the connection is then unusable)", async () => {
    const spec = await peer(() => {});
    const t = await open(spec);
    const t0 = Date.now();
    await expect(t.transmit(CMD, 200)).rejects.toThrow(/no complete response within 200 ms/);
    expect(Date.now() - t0).toBeLessThan(1_500);
    await expect(t.transmit(CMD, 200)).rejects.toThrow(/no complete response/);
  });

  it("reports a connection closed mid-response", async () => {
    const spec = await peer((s) => s.end(Buffer.from("8001000000ff00", "hex")));
    await expect((await open(spec)).transmit(CMD, 2_000)).rejects.toThrow(/connection closed by the TPM/);
  });

  it("reports unsolicited bytes between commands", async () => {
    const spec = await peer((s) => {
      s.write(Buffer.from(frame(0)));
      setTimeout(() => s.write(Buffer.from([0xde, 0xad])), 20);
    });
    const t = await open(spec);
    await t.transmit(CMD, 2_000);
    await new Promise((r) => setTimeout(r, 100));
    await expect(t.transmit(CMD, 2_000)).rejects.toThrow(/2 unsolicited byte\(s\) arrived between commands/);
  });

  it("a peer flooding unsolicited bytes is cut off (memory stays bounded)", async () => {
    const spec = await peer((s) => {
      s.write(Buffer.from(frame(0)));
      setTimeout(() => s.write(Buffer.alloc(64 * 1024, 0x41)), 20);
    });
    const t = await open(spec);
    await t.transmit(CMD, 2_000);
    await new Promise((r) => setTimeout(r, 150));
    await expect(t.transmit(CMD, 2_000)).rejects.toThrow(/unsolicited bytes arrived between commands/);
  });

  it("a refused connection says so with a hint", async () => {
    const server = net.createServer();
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
    const port = (server.address() as net.AddressInfo).port;
    await new Promise<void>((r) => server.close(() => r()));
    const e = await openTransport(`swtpm:127.0.0.1:${port}`, { connectTimeoutMs: 1_000 }).catch((x) => x);
    expect(e).toBeInstanceOf(CvmError);
    expect(e.message).toMatch(/cannot connect/);
    expect(e.hint).toMatch(/swtpm/);
  });
});

describe("device transport", () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "tpmdev-"));

  it("missing device → platform error with the driver hint", async () => {
    const e = await openTransport("/dev/tpmrm0", { root: dir }).catch((x) => x);
    expect(e).toBeInstanceOf(CvmError);
    expect(e.message).toBe(`no TPM device at ${path.join(dir, "dev/tpmrm0")}`);
    expect(e.hint).toMatch(/tpm_crb/);
  });

  it("one write then one read on the same fd (a FIFO echoes the command back as a valid frame)", async () => {
    const fifo = path.join(dir, "fifo");
    execFileSync("mkfifo", [fifo]);
    const t = await openTransport(fifo);
    transports.push(t);
    const got = await t.transmit(CMD, 1_000);
    expect(Buffer.from(got).equals(Buffer.from(CMD))).toBe(true);
  });

  it("a device that returns end-of-file is a ParseError, not a hang", async () => {
    const file = path.join(dir, "file");
    fs.writeFileSync(file, "");
    const t = await openTransport(file);
    transports.push(t);
    await expect(t.transmit(CMD, 1_000)).rejects.toThrow(/returned end-of-file after 0 byte/);
  });
});
