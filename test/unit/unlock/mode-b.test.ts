// Mode B's pure parts: the crypttab entries that use the key socket, the peer address
// systemd-cryptsetup binds to, the key server's decisions (over a stand-in listener), and the
// verified-mapping record codec. The binary with real sockets: test/integration/serve-keys.test.ts.
import { describe, expect, it } from "vitest";
import { volumeSchema } from "../../../agent/config/unlock-schema.ts";
import { parseCrypttab, socketVolumes } from "../../../agent/unlock/crypttab.ts";
import { serveKeys, volumeOfPeer } from "../../../agent/unlock/key-server.ts";
import { decodeMappingRecord, encodeMappingRecord, type VerifiedVolume } from "../../../agent/unlock/mapping-record.ts";
import type { UnixConnection, UnixListener } from "../../../agent/unlock/unix-socket.ts";
import { Deadline } from "../../../platform/util/deadline.ts";
import { createLogger, type Logger } from "../../../platform/util/log.ts";

function memoryLogger(): Logger & { lines: string[] } {
  const lines: string[] = [];
  return Object.assign(createLogger({ format: "text", verbose: true, write: (l: string) => void lines.push(l) }), {
    lines,
  });
}

const SOCK = "/run/cvm-unlock/key.sock";
const UUID = "6d1e7c52-2b4f-4d3e-9a51-0c3b8f2e7a10";
const vols = (text: string) => socketVolumes(parseCrypttab(text, "crypttab"), SOCK, "crypttab");

describe("crypttab (mode B)", () => {
  it("takes the entries whose key file is the socket, with their selectors and table options", () => {
    const v = vols(
      `# comment\n\nroot UUID=${UUID.toUpperCase()} ${SOCK} luks,headless=true,discard,tries=1\n` +
        `var PARTLABEL=var ${SOCK} luks,headless=true,x-initrd.attach\n` +
        `swap /dev/vdc /dev/urandom swap\n` +
        `data /dev/disk/by-id/x ${SOCK} headless=true\n`,
    );
    expect(v.map((x) => [x.name, x.selector, x.tableOptions])).toEqual([
      ["root", { uuid: UUID }, ["allow_discards"]],
      ["var", { partlabel: "var" }, []],
      ["data", { device: "/dev/disk/by-id/x" }, []],
    ]);
    expect(
      vols(`r PARTUUID=ABC ${SOCK} headless=true\nl LABEL=x ${SOCK} headless=true`).map((x) => x.selector),
    ).toEqual([{ device: "/dev/disk/by-partuuid/abc" }, { device: "/dev/disk/by-label/x" }]);
  });

  it("refuses entries a served key would not cover: no headless, detached header, key slices, tokens", () => {
    expect(() => vols(`root UUID=${UUID} ${SOCK} luks`)).toThrow(/headless=true is missing/);
    // systemd takes the last headless= option
    for (const o of ["headless=true,headless=false", "headless=no", "headless=", "headless=yes,headless=0"])
      expect(() => vols(`root UUID=${UUID} ${SOCK} luks,${o}`), o).toThrow(/headless=true is missing/);
    for (const o of ["headless", "headless=on", "headless=0,headless=1"])
      expect(vols(`root UUID=${UUID} ${SOCK} luks,${o}`), o).toHaveLength(1);
    const refused = ["header=/h", "keyfile-offset=4", "keyfile-size=8", "tpm2-device=auto", "plain", "tcrypt"];
    for (const o of [...refused, "try-empty-password", "try-empty-password=true"])
      expect(() => vols(`root UUID=${UUID} ${SOCK} luks,headless=true,${o}`)).toThrow(
        new RegExp(`option ${o.split("=")[0]} is not supported`),
      );
    expect(() => vols(`ro:ot UUID=${UUID} ${SOCK} headless=true`)).toThrow(/not a device-mapper name/);
    expect(() => vols(`root UUID=${UUID} ${SOCK} headless=true\nroot /dev/vdb ${SOCK} headless=true`)).toThrow(
      /appears twice/,
    );
    // another key file under one of our names: systemd-cryptsetup would open only one of the two
    expect(() => vols(`root /dev/vdb /etc/keyfile luks\nroot UUID=${UUID} ${SOCK} headless=true`)).toThrow(
      /appears twice/,
    );
    // names that leave /dev/mapper or are libdevmapper's control node
    for (const name of [".", "..", "control", "a/b", "../root", "x".repeat(65)])
      expect(() => vols(`${name} UUID=${UUID} ${SOCK} headless=true`), name).toThrow(/not a device-mapper name/);
    expect(vols(`.root UUID=${UUID} ${SOCK} headless=true`).map((v) => v.name)).toEqual([".root"]);
    // the same pattern guards mode A's unlock.volumes[].name
    expect(() => volumeSchema.parse({ name: ".." }, "unlock.volumes[0]")).toThrow(/dm name/);
    expect(() => vols(`root UUID=nope ${SOCK} headless=true`)).toThrow(/not a UUID/);
    expect(() => vols(`root vda2 ${SOCK} headless=true`)).toThrow(/absolute path/);
    expect(() => vols(`root /dev/vda2 ${SOCK} headless=true extra`)).toThrow(/2 to 4 fields/);
  });
});

const abstract = (s: string) => Buffer.concat([Buffer.from([0]), Buffer.from(s)]);

describe("the key socket peer address", () => {
  it("is systemd-cryptsetup's \\0<hex>/cryptsetup/<volume> and nothing else", () => {
    expect(volumeOfPeer(abstract("5f3a9c0d12e4b6a7/cryptsetup/root"))).toBe("root");
    expect(volumeOfPeer(abstract("0/cryptsetup/vg.var-1"))).toBe("vg.var-1");
    for (const bad of [
      Buffer.alloc(0), // unnamed
      Buffer.from("/run/x/cryptsetup/root"), // a filesystem path
      abstract("cryptsetup/root"),
      abstract("zz/cryptsetup/root"),
      abstract("12/cryptsetup/"),
      abstract("12/cryptsetup/a/b"),
      abstract("12/other/root"),
      Buffer.from([0, 0x31, 0x2f, 0xff, 0xfe]),
    ])
      expect(volumeOfPeer(bad)).toBeUndefined();
  });
});

class FakeConn implements UnixConnection {
  sent: Buffer[] = [];
  closed = false;
  constructor(
    readonly peerAddress: Uint8Array,
    readonly peerUid = 0,
  ) {}
  send(b: Uint8Array): void {
    this.sent.push(Buffer.from(b));
  }
  close(): void {
    this.closed = true;
  }
}

class FakeListener implements UnixListener {
  closed = false;
  constructor(readonly queue: FakeConn[]) {}
  accept(): UnixConnection | undefined {
    return this.queue.shift();
  }
  close(): void {
    this.closed = true;
  }
}

describe("the key server", () => {
  const keys = () =>
    new Map([
      ["root", Buffer.from("root-key")],
      ["var", Buffer.from("var-key")],
    ]);

  it("serves each volume its own key once; other volumes, non-root peers, unnamed peers and repeats get nothing", async () => {
    const conns = [
      new FakeConn(abstract("1/cryptsetup/evil")),
      new FakeConn(abstract("2/cryptsetup/root"), 1000),
      new FakeConn(Buffer.alloc(0)),
      new FakeConn(abstract("3/cryptsetup/root")),
      new FakeConn(abstract("4/cryptsetup/root")), // a second connection for root
      new FakeConn(abstract("5/cryptsetup/var")),
    ];
    const l = new FakeListener([...conns]);
    const log = memoryLogger();
    const d = new Deadline(5000);
    expect(await serveKeys(l, keys(), d, log)).toEqual(["root", "var"]);
    d.dispose();
    expect(conns.map((c) => c.sent.map((b) => b.toString()))).toEqual([[], [], [], ["root-key"], [], ["var-key"]]);
    expect(conns.every((c) => c.closed)).toBe(true);
    expect(l.closed).toBe(true);
    const said = log.lines.join("\n");
    expect(said).toMatch(/"evil" is not one this key socket serves/);
    expect(said).toMatch(/uid 1000, not root/);
    expect(said).toMatch(/unnamed socket/);
    expect(said).toMatch(/root was already served \(a second connection/);
  });

  it("stops at the deadline, naming the volumes nobody asked for, and closes the socket", async () => {
    const l = new FakeListener([new FakeConn(abstract("1/cryptsetup/root"))]);
    const d = new Deadline(300);
    await expect(serveKeys(l, keys(), d, memoryLogger())).rejects.toThrow(/before systemd-cryptsetup asked for var/);
    d.dispose();
    expect(l.closed).toBe(true);
  });
});

describe("the verified-mapping record", () => {
  const v: VerifiedVolume = {
    name: "root",
    uuid: UUID,
    device: "/dev/disk/by-uuid/" + UUID,
    mapping: {
      cipher: "aes-xts-plain64",
      keyBytes: 64,
      ivOffset: 0n,
      offset: 32768n,
      length: 8192n,
      sectorSize: 4096,
      identity: { block: true, devno: "252:2", dev: 5, ino: 77 },
    },
    tableOptions: ["allow_discards"],
  };

  it("round-trips and refuses anything it would not write", () => {
    const text = encodeMappingRecord([v]);
    expect(decodeMappingRecord(text, "f")).toEqual([v]);
    const o = JSON.parse(text);
    const mutate = (f: (x: any) => void) => {
      const c = structuredClone(o);
      f(c);
      return JSON.stringify(c);
    };
    expect(() =>
      decodeMappingRecord(
        mutate((c) => (c.version = 2)),
        "f",
      ),
    ).toThrow(/'version'/);
    expect(() =>
      decodeMappingRecord(
        mutate((c) => (c.volumes[0].extra = 1)),
        "f",
      ),
    ).toThrow(/extra' is not a known key/);
    expect(() =>
      decodeMappingRecord(
        mutate((c) => (c.volumes[0].mapping.offset = "-1")),
        "f",
      ),
    ).toThrow(/offset/);
    expect(() =>
      decodeMappingRecord(
        mutate((c) => (c.volumes[0].mapping.identity.block = "yes")),
        "f",
      ),
    ).toThrow(/block/);
    expect(() =>
      decodeMappingRecord(
        mutate((c) => (c.volumes[0].name = "a b")),
        "f",
      ),
    ).toThrow(/name/);
    expect(() => decodeMappingRecord("{", "f")).toThrow(/not JSON/);
  });
});
