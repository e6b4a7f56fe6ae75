// The TPM client against a real libtpms TPM (swtpm): every command, chunking, errors, evidence.
import { createHash, createVerify } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Deadline } from "../../platform/util/deadline.ts";
import { silentLogger } from "../../platform/util/log.ts";
import { fromB64, hex } from "../../platform/util/bytes.ts";
import { AK_RSA_TEMPLATE } from "../../platform/tpm/attestation/ak.ts";
import { TPMA_NV, TPM_ALG, TPM_HR, TPM_PT, TPM_RH } from "../../platform/tpm/constants.ts";
import { TPM_RC, TpmError } from "../../platform/tpm/rc.ts";
import { collectTpmEvidence } from "../../platform/tpm/attestation/evidence.ts";
import {
  createPrimary,
  flushContext,
  getActiveBanks,
  getHandles,
  getPcrBanks,
  getProperties,
  measureIntoPcr,
  nvBufferMax,
  nvDefine,
  nvRead,
  nvReadPublic,
  nvReadPublicIfPresent,
  nvUndefine,
  nvWrite,
  pcrExtend,
  pcrRead,
  pcrReadBank,
  quote,
  readPublic,
  readPublicIfPresent,
  withPrimary,
} from "../../platform/tpm/operations.ts";
import { decodeQuoteAttest } from "../../platform/tpm/structures.ts";
import { describeTpm, formatTpmDescription } from "../../platform/tpm/describe.ts";
import { openTpm, type Tpm } from "../../platform/tpm/client.ts";
import { publicToSpkiDer } from "../../platform/tpm/attestation/keys.ts";
import { readEkCertificates } from "../../platform/tpm/ekcert.ts";
import { makeTpmSource } from "../../platform/tpm/source.ts";
import { startSwtpm, type Swtpm } from "../helpers/swtpm.ts";
import { encodeEventLog } from "../../platform/eventlog/encode.ts";
import type { PlatformEnv } from "../../platform/types.ts";

let sw: Swtpm;
let tpm: Tpm;
let deadline: Deadline;

beforeAll(async () => {
  sw = await startSwtpm();
  deadline = new Deadline(110_000);
  tpm = await openTpm(sw.spec, deadline, silentLogger);
});

afterAll(async () => {
  tpm?.close();
  deadline?.dispose();
  await sw?.stop();
});

const sha256 = (b: Uint8Array | string) => new Uint8Array(createHash("sha256").update(b).digest());

describe("GetCapability", () => {
  it("reads properties, manufacturer IBM, NV buffer 1024", async () => {
    const props = await getProperties(tpm);
    expect(props.get(TPM_PT.FAMILY_INDICATOR)).toBe(0x322e3000);
    expect(props.get(TPM_PT.MANUFACTURER)).toBe(0x49424d00);
    expect(await nvBufferMax(tpm)).toBe(1024);
    expect(props.size).toBeGreaterThan(40);
  });

  it("reports the banks swtpm_setup activated", async () => {
    const banks = await getPcrBanks(tpm);
    expect(banks.map((b) => b.hash)).toContain(TPM_ALG.SHA512);
    expect((await getActiveBanks(tpm)).sort()).toEqual([TPM_ALG.SHA1, TPM_ALG.SHA256, TPM_ALG.SHA384].sort());
  });

  it("lists NV indices and persistent handles", async () => {
    expect(await getHandles(tpm, TPM_HR.NV_INDEX)).toEqual(
      expect.arrayContaining([0x01c00002, 0x01c00016, 0x01c08000]),
    );
    expect(await getHandles(tpm, TPM_HR.PERSISTENT)).toEqual(expect.arrayContaining([0x81010001]));
  });
});

describe("PCR_Read / PCR_Extend", () => {
  it("reads all 24 PCRs of three banks although a TPM returns at most 8 per call", async () => {
    const sel = [TPM_ALG.SHA1, TPM_ALG.SHA256, TPM_ALG.SHA384].map((hash) => ({
      hash,
      pcrs: Array.from({ length: 24 }, (_, i) => i),
    }));
    const values = await pcrRead(tpm, sel);
    expect(values).toHaveLength(72);
    expect(values[0]).toMatchObject({ hash: TPM_ALG.SHA1, pcr: 0 });
    expect(values[71]).toMatchObject({ hash: TPM_ALG.SHA384, pcr: 23 });
    expect(values.find((v) => v.hash === TPM_ALG.SHA384)!.digest).toHaveLength(48);
  });

  it("extends PCR 16 in one bank only and the value is SHA256(old || digest)", async () => {
    const [before] = await pcrReadBank(tpm, TPM_ALG.SHA256, [16]);
    const [sha1Before] = await pcrReadBank(tpm, TPM_ALG.SHA1, [16]);
    const d = sha256("hello");
    await pcrExtend(tpm, 16, [{ hashAlg: TPM_ALG.SHA256, digest: d }]);
    const [after] = await pcrReadBank(tpm, TPM_ALG.SHA256, [16]);
    expect(hex(after!)).toBe(hex(sha256(Buffer.concat([before!, d]))));
    expect(hex((await pcrReadBank(tpm, TPM_ALG.SHA1, [16]))[0]!)).toBe(hex(sha1Before!));
  });

  it("measureIntoPcr extends PCR 15 in every active bank", async () => {
    const before = await pcrRead(
      tpm,
      [TPM_ALG.SHA1, TPM_ALG.SHA256, TPM_ALG.SHA384].map((hash) => ({ hash, pcrs: [15] })),
    );
    const digests = await measureIntoPcr(tpm, 15, new TextEncoder().encode("volume-uuid"));
    expect(digests.map((d) => d.hashAlg).sort()).toEqual([TPM_ALG.SHA1, TPM_ALG.SHA256, TPM_ALG.SHA384].sort());
    const after = await pcrRead(
      tpm,
      [TPM_ALG.SHA1, TPM_ALG.SHA256, TPM_ALG.SHA384].map((hash) => ({ hash, pcrs: [15] })),
    );
    for (const a of after) expect(hex(a.digest)).not.toBe(hex(before.find((b) => b.hash === a.hash)!.digest));
  });
});

describe("keys", () => {
  it("CreatePrimary of the AK template is deterministic and ReadPublic agrees; FlushContext frees it", async () => {
    const a = await createPrimary(tpm, TPM_RH.ENDORSEMENT, AK_RSA_TEMPLATE);
    const pubA = await readPublic(tpm, a.handle);
    await flushContext(tpm, a.handle);
    const b = await createPrimary(tpm, TPM_RH.ENDORSEMENT, AK_RSA_TEMPLATE);
    await flushContext(tpm, b.handle);
    expect(hex(a.publicBytes)).toBe(hex(b.publicBytes));
    expect(hex(pubA.publicBytes)).toBe(hex(a.publicBytes));
    expect(hex(pubA.name)).toBe(hex(a.name));
    expect(hex(a.name)).toBe("000b" + hex(sha256(a.publicBytes)));
    await expect(flushContext(tpm, a.handle)).rejects.toMatchObject({ decoded: { code: TPM_RC.HANDLE, parameter: 1 } });
  });

  it("measures CreatePrimary of the RSA-2048 AK (libtpms derives the primes from the seed each time)", async () => {
    const ms: number[] = [];
    for (let i = 0; i < 5; i++) {
      const t0 = performance.now();
      const k = await createPrimary(tpm, TPM_RH.ENDORSEMENT, AK_RSA_TEMPLATE);
      ms.push(performance.now() - t0);
      await flushContext(tpm, k.handle);
    }
    ms.sort((a, b) => a - b);
    console.log(
      `[tpm] CreatePrimary RSA-2048 AK x5 on swtpm: min ${ms[0]!.toFixed(1)} ms, median ${ms[2]!.toFixed(1)} ms, max ${ms[4]!.toFixed(1)} ms`,
    );
    expect(ms[4]).toBeLessThan(10_000);
  });

  it("withPrimary flushes the key also when the callback throws", async () => {
    let handle = 0;
    await expect(
      withPrimary(tpm, TPM_RH.ENDORSEMENT, AK_RSA_TEMPLATE, async (k) => {
        handle = k.handle;
        throw new Error("boom");
      }),
    ).rejects.toThrow("boom");
    expect(await readPublicIfPresent(tpm, handle)).toBeUndefined();
    expect(await getHandles(tpm, TPM_HR.TRANSIENT)).toEqual([]);
  });

  it("absent persistent handle gives TPM_RC_HANDLE", async () => {
    const e = await readPublic(tpm, 0x81017777).catch((x) => x);
    expect(e).toBeInstanceOf(TpmError);
    expect(e.message).toMatch(/TPM2_ReadPublic failed: TPM_RC_HANDLE \(handle 1\)/);
  });
});

describe("Quote", () => {
  it("signs SHA-256 PCR0-23 with RSASSA-SHA256; node:crypto verifies it and pcrDigest matches PCRs", async () => {
    await withPrimary(tpm, TPM_RH.ENDORSEMENT, AK_RSA_TEMPLATE, async (ak) => {
      const nonce = sha256("nonce");
      const q = await quote(tpm, {
        signHandle: ak.handle,
        qualifyingData: nonce,
        scheme: { scheme: TPM_ALG.RSASSA, hashAlg: TPM_ALG.SHA256 },
        selection: [{ hash: TPM_ALG.SHA256, pcrs: Array.from({ length: 24 }, (_, i) => i) }],
      });
      expect(hex(q.attest.extraData)).toBe(hex(nonce));
      expect(hex(q.signatureBytes.subarray(0, 6))).toBe("0014000b0100");
      const pcrs = await pcrReadBank(
        tpm,
        TPM_ALG.SHA256,
        Array.from({ length: 24 }, (_, i) => i),
      );
      expect(hex(q.attest.pcrDigest)).toBe(hex(sha256(Buffer.concat(pcrs))));
      const spki = publicToSpkiDer(ak.publicArea);
      const ok = createVerify("sha256")
        .update(q.message)
        .verify({ key: Buffer.from(spki), format: "der", type: "spki" }, Buffer.from(q.signatureBytes.subarray(6)));
      expect(ok).toBe(true);
    });
  });

  it("a wrong explicit scheme is TPM_RC_SCHEME on parameter 2", async () => {
    await withPrimary(tpm, TPM_RH.ENDORSEMENT, AK_RSA_TEMPLATE, async (ak) => {
      const e = await quote(tpm, {
        signHandle: ak.handle,
        qualifyingData: new Uint8Array(4),
        scheme: { scheme: TPM_ALG.RSAPSS, hashAlg: TPM_ALG.SHA256 },
        selection: [{ hash: TPM_ALG.SHA256, pcrs: [0] }],
      }).catch((x) => x);
      expect(e).toBeInstanceOf(TpmError);
      expect(e.decoded).toMatchObject({ code: TPM_RC.SCHEME, parameter: 2 });
    });
  });
});

describe("NV", () => {
  it("reads the RSA EK certificate in 1024-byte chunks and its key equals the EK's", async () => {
    const pub = await nvReadPublic(tpm, 0x01c00002);
    expect(pub.attributes & TPMA_NV.WRITTEN).toBeTruthy();
    const der = await nvRead(tpm, 0x01c00002);
    expect(der).toHaveLength(pub.dataSize);
    expect(der[0]).toBe(0x30);
    const certs = await readEkCertificates(tpm);
    expect(certs.map((c) => c.index)).toEqual([0x01c00002, 0x01c00016]);
    expect(certs[0]).toMatchObject({ issuer: "CN=swtpm-localca", keyType: "rsa" });
    expect(certs[1]).toMatchObject({ keyType: "ec" });
  });

  it("absent index: NV_ReadPublic → TPM_RC_HANDLE, IfPresent → undefined", async () => {
    expect(await nvReadPublicIfPresent(tpm, 0x01c0000a)).toBeUndefined();
    await expect(nvRead(tpm, 0x01c0000a)).rejects.toMatchObject({ decoded: { code: TPM_RC.HANDLE, handle: 1 } });
  });

  it("defines, writes (chunked across 1024), reads back and undefines an owner index", async () => {
    const index = 0x01500010;
    const data = Uint8Array.from({ length: 2000 }, (_, i) => (i * 7) & 0xff);
    await nvDefine(tpm, { index, size: data.length });
    try {
      await expect(nvRead(tpm, index)).rejects.toThrow(/never written/);
      await nvWrite(tpm, index, data);
      expect(hex(await nvRead(tpm, index))).toBe(hex(data));
      expect(hex(await nvRead(tpm, index, { offset: 1500, size: 100, authHandle: TPM_RH.OWNER }))).toBe(
        hex(data.subarray(1500, 1600)),
      );
      await expect(nvDefine(tpm, { index, size: 8 })).rejects.toMatchObject({ decoded: { code: TPM_RC.NV_DEFINED } });
    } finally {
      await nvUndefine(tpm, index);
    }
    expect(await nvReadPublicIfPresent(tpm, index)).toBeUndefined();
  });

  it("Azure-style user data: 64 bytes written with owner auth to 0x01400002", async () => {
    const index = 0x01400002;
    const data = sha256("a").subarray(0, 32);
    const user = new Uint8Array(64);
    user.set(data);
    await nvDefine(tpm, { index, size: 64, attributes: TPMA_NV.OWNERWRITE | TPMA_NV.OWNERREAD });
    try {
      await nvWrite(tpm, index, user);
      expect(hex(await nvRead(tpm, index))).toBe(hex(user));
    } finally {
      await nvUndefine(tpm, index);
    }
  });
});

describe("describe and evidence", () => {
  it("describeTpm summarises manufacturer, banks, handles and EK certificates", async () => {
    const d = await describeTpm(tpm);
    expect(d).toMatchObject({ family: "2.0", manufacturer: "IBM" });
    expect(d.ekCertificates).toHaveLength(2);
    const text = formatTpmDescription(d).join("\n");
    expect(text).toMatch(/RSA 2048 EK certificate at 0x01c00002: subject "CN=unknown", issuer "CN=swtpm-localca"/);
    expect(text).toMatch(/sha256, sha384/);
  });

  it("describeTpm replays an event log against the PCRs and names the PCR that disagrees", async () => {
    const d10 = sha256("event for pcr 10");
    const d11 = sha256("event for pcr 11");
    const spec = {
      platformClass: 0,
      specErrata: 0,
      uintnSize: 2,
      algorithms: [{ id: TPM_ALG.SHA256, name: "sha256", size: 32 }],
      vendorInfo: new Uint8Array(0),
    };
    const event = (index: number, d: Uint8Array) => ({
      index,
      type: 0xd,
      digests: new Map([[TPM_ALG.SHA256, d]]),
      data: new Uint8Array(4),
    });
    await pcrExtend(tpm, 10, [{ hashAlg: TPM_ALG.SHA256, digest: d10 }]);
    await pcrExtend(tpm, 11, [{ hashAlg: TPM_ALG.SHA256, digest: d11 }]);
    const good = await describeTpm(tpm, {
      ekCertificates: false,
      eventLog: encodeEventLog(spec, [event(10, d10), event(11, d11)]),
    });
    expect(good.eventLog?.banks).toEqual([{ alg: "sha256", matched: [10, 11], mismatched: [] }]);
    const bad = await describeTpm(tpm, {
      ekCertificates: false,
      eventLog: encodeEventLog(spec, [event(10, d10), event(11, d10)]),
    });
    expect(bad.eventLog?.banks[0]!.mismatched.map((m) => m.pcr)).toEqual([11]);
    expect(formatTpmDescription(bad).join("\n")).toMatch(/sha256: MISMATCH in PCR 11/);
    const garbage = await describeTpm(tpm, { ekCertificates: false, eventLog: new Uint8Array(40).fill(0xee) });
    expect(garbage.eventLog?.error).toBeDefined();
  });

  it("collectTpmEvidence produces trustee's JSON bound to the first 32 bytes of the digest", async () => {
    const digest = new Uint8Array(createHash("sha384").update("runtime").digest());
    const r = await collectTpmEvidence(tpm, digest, 0x81010002);
    expect(r.akOrigin).toBe("derived");
    expect(Object.keys(r.evidence)).toEqual(["ak_public", "tpm_quote"]);
    expect(Object.keys(r.evidence.tpm_quote)).toEqual(["signature", "message", "pcrs"]);
    expect(r.evidence.tpm_quote.pcrs).toHaveLength(24);
    for (const p of r.evidence.tpm_quote.pcrs) expect(p).toMatch(/^[0-9a-f]{64}$/);
    const attest = decodeQuoteAttest(fromB64(r.evidence.tpm_quote.message));
    expect(hex(attest.extraData)).toBe(hex(digest.subarray(0, 32)));
    expect(r.timings["ak-create-primary"]).toBeGreaterThan(0);
    expect(await getHandles(tpm, TPM_HR.TRANSIENT)).toEqual([]);
    console.log(
      `[tpm] CreatePrimary(RSA-2048 AK) on swtpm: ${r.timings["ak-create-primary"]} ms; quote ${r.timings.quote} ms; PCR read ${r.timings["pcr-read"]} ms`,
    );
  });
});

describe("tpm EvidenceSource", () => {
  const tpmSource = makeTpmSource();
  const env = (spec: string, akHandle = 0x81010002): PlatformEnv => ({
    paths: { root: "/", tsmReport: "/sys/kernel/config/tsm/report" },
    tpm: { spec, akHandle },
    azure: { metadataUrl: "http://169.254.169.254", legacyTeeNames: false },
    deadline,
    log: silentLogger,
  });

  it("probe: present with details; a missing device is absent (driver hint); a named TPM that refuses is broken", async () => {
    tpm.close(); // swtpm serves one client at a time
    try {
      const p = await tpmSource.probe(env(sw.spec));
      expect(p).toMatchObject({
        status: "present",
        tee: "tpm",
        details: { manufacturer: "IBM", banks: "sha1,sha256,sha384" },
      });
      const missing = await tpmSource.probe(env("/nonexistent/tpmrm0"));
      expect(missing.status).toBe("absent");
      expect(missing.reason).toMatch(/no TPM device at \/nonexistent\/tpmrm0/);
      expect(missing.hint).toMatch(/tpm_crb/);
      const refused = await tpmSource.probe(env(`swtpm:127.0.0.1:${sw.port + 2}`));
      expect(refused).toMatchObject({ status: "broken", reason: expect.stringMatching(/cannot connect/) });
    } finally {
      tpm = await openTpm(sw.spec, deadline, silentLogger);
    }
  });

  it("collect uses the persistent AK once one exists at the handle", async () => {
    tpm.close();
    try {
      await sw.persistAk(0x81010002);
      const ev = await tpmSource.collect(env(sw.spec), { runtimeDigest: new Uint8Array(48).fill(7), tee: "tpm" });
      expect(ev.tee).toBe("tpm");
      expect(ev.timings!["ak-read-public"]).toBeDefined();
      const derived = await tpmSource.collect(env(sw.spec, 0x81010003), {
        runtimeDigest: new Uint8Array(48).fill(7),
        tee: "tpm",
      });
      // Same template + same endorsement seed ⇒ the persisted AK and the derived AK are the same key.
      expect((derived.primary as { ak_public: string }).ak_public).toBe(
        (ev.primary as { ak_public: string }).ak_public,
      );
    } finally {
      tpm = await openTpm(sw.spec, deadline, silentLogger);
    }
  });
});
