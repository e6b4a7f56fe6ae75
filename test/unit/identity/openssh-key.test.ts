import * as fs from "node:fs";
import * as path from "node:path";
import { ed25519 } from "@noble/curves/ed25519.js";
import { describe, expect, it } from "vitest";
import {
  encodeOpensshPrivateKey,
  generateEd25519HostKey,
  parseOpensshPrivateKey,
  publicKeyBlob,
  publicKeyLine,
  sshFingerprint,
} from "../../../agent/identity/openssh-key.ts";
import { decodeBase64, encodeBase64 } from "../../../agent/identity/secret-base64.ts";
import { SshWriter } from "../../../agent/identity/ssh-wire.ts";
import { ParseError } from "../../../platform/util/errors.ts";
import { thrownBy } from "../../helpers/thrown.ts";

const FIX = path.join(import.meta.dirname, "../../fixtures/ssh");
const fixture = (name: string) => fs.readFileSync(path.join(FIX, name));
// `ssh-keygen -lf test/fixtures/ssh/host_ed25519.pub` (PROVENANCE.md)
const HOST_FINGERPRINT = "SHA256:8f8p8/kyS1JqtqI90Ik/UpJDGkcdefEzoHMHkRVxTBY";

/** The refusal, which must be a ParseError. */
function parseError(input: Uint8Array): ParseError {
  return thrownBy(() => parseOpensshPrivateKey(input), ParseError);
}

function armor(bin: Uint8Array): Buffer {
  const b64 = Buffer.from(bin)
    .toString("base64")
    .replace(/(.{70})/g, "$1\n");
  return Buffer.from(
    `-----BEGIN OPENSSH PRIVATE KEY-----\n${b64.replace(/\n$/, "")}\n-----END OPENSSH PRIVATE KEY-----\n`,
  );
}

interface Parts {
  cipher: string;
  kdf: string;
  nkeys: number;
  pub: Uint8Array;
  keytype: string;
  innerPub: Uint8Array;
  sk: Uint8Array;
  check2: number;
  padding: number[] | undefined;
  trailing: Uint8Array;
  comment: string;
}

/** An openssh-key-v1 file built from parts (the hostile KBS's toolbox). */
function build(over: Partial<Parts> = {}): Buffer {
  const seed = new Uint8Array(32).fill(7);
  const pub = ed25519.getPublicKey(seed);
  const p: Parts = {
    cipher: "none",
    kdf: "none",
    nkeys: 1,
    pub,
    keytype: "ssh-ed25519",
    innerPub: pub,
    sk: new Uint8Array([...seed, ...pub]),
    check2: 0x01020304,
    padding: undefined,
    trailing: new Uint8Array(0),
    comment: "c",
    ...over,
  };
  const section = new SshWriter()
    .u32(0x01020304)
    .u32(p.check2)
    .string(p.keytype)
    .string(p.innerPub)
    .string(p.sk)
    .string(p.comment);
  const pad = p.padding ?? Array.from({ length: (8 - (section.length % 8)) % 8 }, (_, i) => i + 1);
  section.raw(Uint8Array.from(pad));
  return armor(
    new SshWriter()
      .raw(Buffer.from("openssh-key-v1\0"))
      .string(p.cipher)
      .string(p.kdf)
      .string(new Uint8Array(0))
      .u32(p.nkeys)
      .string(new SshWriter().string("ssh-ed25519").string(p.pub).finish())
      .string(section.finish())
      .raw(p.trailing)
      .finish(),
  );
}

/** The binary inside the armour. */
function binary(file: Buffer): Buffer {
  return Buffer.from(file.toString().split("\n").slice(1, -2).join(""), "base64");
}

describe("OpenSSH private key codec", () => {
  it("parses an ssh-keygen ed25519 key and re-encodes it byte for byte", () => {
    const file = fixture("host_ed25519");
    const k = parseOpensshPrivateKey(file);
    expect(k.comment).toBe("host@fixture");
    expect(sshFingerprint(publicKeyBlob(k.publicKey))).toBe(HOST_FINGERPRINT);
    expect(publicKeyLine(k.publicKey, k.comment) + "\n").toBe(fixture("host_ed25519.pub").toString());
    expect(encodeOpensshPrivateKey(k).equals(file)).toBe(true);
    k.dispose();
    expect(k.seed.every((b) => b === 0)).toBe(true);
  });

  it("accepts the key this test builds (so each refusal below is caused by its one change)", () => {
    expect(parseOpensshPrivateKey(build()).comment).toBe("c");
  });

  it("refuses a passphrase-protected key, naming the cipher", () => {
    const e = parseError(fixture("encrypted_ed25519"));
    expect(e.field).toBe("ciphername");
    expect(e.message).toMatch(/aes256-ctr.*passphrase/);
    expect(e.kind).toBe("kbs-protocol");
    expect(parseError(build({ kdf: "bcrypt" })).field).toBe("kdfname");
  });

  it("refuses another key type (ecdsa) and a wrong inner key type", () => {
    expect(parseError(fixture("ecdsa_host")).message).toMatch(/ecdsa-sha2-nistp256.*expected "ssh-ed25519"/);
    expect(parseError(build({ keytype: "ssh-rsa" })).field).toBe("keytype");
  });

  it("refuses a private key whose public half differs from the public key", () => {
    const other = ed25519.getPublicKey(new Uint8Array(32).fill(9));
    const seed = new Uint8Array(32).fill(7);
    expect(parseError(build({ innerPub: other })).message).toMatch(/differs from the file's public key/);
    const pub = ed25519.getPublicKey(seed);
    expect(parseError(build({ sk: new Uint8Array([...seed, ...other]) })).message).toMatch(/public half differs/);
    // Consistent halves, but the seed belongs to another key.
    const wrongSeed = new Uint8Array([...new Uint8Array(32).fill(9), ...pub]);
    expect(parseError(build({ sk: wrongSeed })).message).toMatch(/seed does not derive the public key/);
  });

  it("refuses unequal checkints, bad padding, several keys, bad magic and trailing bytes", () => {
    expect(parseError(build({ check2: 5 })).field).toBe("checkint2");
    expect(parseError(build({ padding: [] })).field).toBe("private section");
    expect(parseError(build({ nkeys: 2 })).field).toBe("nkeys");
    expect(parseError(build({ trailing: Uint8Array.of(0) })).field).toBe("end");
    const badMagic = binary(build());
    badMagic[3]! ^= 1;
    expect(parseError(armor(badMagic)).field).toBe("magic");
  });

  it("refuses a comment that could add a line to the installed .pub file, and padding of a whole block", () => {
    // the comment ends up in ssh_host_ed25519_key.pub: a newline would smuggle a second key line
    expect(parseError(build({ comment: "c\nssh-ed25519 AAAA other" })).field).toBe("comment");
    expect(parseError(build({ comment: "c\u00e9" })).field).toBe("comment");
    // ssh-keygen pads to the block size: 8 more padding bytes still follow 1, 2, 3, ... (as OpenSSH reads it)
    expect(parseOpensshPrivateKey(build({ padding: [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12] })).comment).toBe("c");
    expect(parseError(build({ padding: [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 0] })).field).toBe("padding");
  });

  it("refuses a wrong padding byte", () => {
    // section: 8 checkints + 15 type + 36 pk + 68 sk + 5 comment = 132 → 4 padding bytes.
    expect(parseError(build({ padding: [1, 2, 3, 5] })).field).toBe("padding");
  });

  it("refuses every truncation of the binary with a ParseError", () => {
    const full = binary(build());
    for (let n = 0; n < full.length; n++) expect(parseError(armor(full.subarray(0, n)))).toBeInstanceOf(ParseError);
  });

  it("refuses broken armour and oversized input", () => {
    expect(parseError(Buffer.from("ssh-ed25519 AAAA")).field).toBe("armor");
    expect(parseError(Buffer.from(build().toString().replace("END OPENSSH", "END RSA"))).field).toBe("armor");
    expect(
      parseError(
        Buffer.from(
          build()
            .toString()
            .replace(/\n([A-Za-z])/, "\n!"),
        ),
      ).field,
    ).toBe("armor");
    expect(parseError(Buffer.alloc(9000, 0x41)).field).toBe("file");
  });

  it("generates keys that parse back, with a fresh checkint", () => {
    let i = 0;
    const random = (n: number) => Uint8Array.from({ length: n }, () => i++ & 0xff);
    const k = generateEd25519HostKey("vm", random);
    const back = parseOpensshPrivateKey(encodeOpensshPrivateKey(k));
    expect(back.publicKey).toEqual(k.publicKey);
    expect(back.seed.equals(k.seed)).toBe(true);
    expect(back.checkint).toBe(k.checkint);
  });
});

describe("secret base64", () => {
  it("round-trips every length and matches Node's encoder", () => {
    for (let n = 0; n < 40; n++) {
      const b = Uint8Array.from({ length: n }, (_, i) => (i * 37 + n) & 0xff);
      const enc = encodeBase64(b);
      expect(enc.toString()).toBe(Buffer.from(b).toString("base64"));
      if (n > 0) expect(decodeBase64(enc)).toEqual(Buffer.from(b));
    }
  });

  it("refuses non-canonical input with the offset of the bad character", () => {
    expect(decodeBase64(Buffer.from("QQ=="))).toEqual(Buffer.from("A"));
    expect(decodeBase64(Buffer.from("QR=="))).toEqual({ badAt: 1 });
    expect(decodeBase64(Buffer.from("Q!=="))).toEqual({ badAt: 1 });
    expect(decodeBase64(Buffer.from("QQ="))).toEqual({ badAt: 3 });
    expect(decodeBase64(Buffer.from("Q=QQ"))).toEqual({ badAt: 1 });
  });
});
