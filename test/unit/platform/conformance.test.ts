// Every registered evidence source against the one contract of platform/types.ts, checked the same
// way: naming (platform/<dir>/source.ts exports make<Id>Source), tee names, probe statuses on an
// empty, a junk and a "detected but broken" stand-in tree, and the shape of collected evidence.
// A new source must add its scenarios below, or this test fails.
import * as fs from "node:fs";
import * as net from "node:net";
import * as os from "node:os";
import * as path from "node:path";
import { afterAll, afterEach, describe, expect, it } from "vitest";
import { TEE_CHOICES } from "../../../agent/config/schema.ts";
import { HCL_REPORT_NV_INDEX } from "../../../platform/azure/constants.ts";
import { evidenceSources } from "../../../platform/registry.ts";
import { TPM_CC, TPMA_NV, TPM_ALG } from "../../../platform/tpm/constants.ts";
import type { EvidenceSource, PlatformEnv, SourceId } from "../../../platform/types.ts";
import { Deadline } from "../../../platform/util/deadline.ts";
import { CvmError } from "../../../platform/util/errors.ts";
import { silentLogger } from "../../../platform/util/log.ts";
import { ByteWriter } from "../../../platform/util/reader.ts";
import { FakeTsm } from "../../helpers/fake-tsm.ts";
import { snpProvider, testPki } from "../../helpers/snp-fixtures.ts";
import { tdxOutblobFor } from "../../helpers/tdx-fixtures.ts";
import { checkPresentSource, checkProbe, PRESENT_IN_INTEGRATION } from "../../helpers/source-contract.ts";

const PLATFORM = path.resolve(import.meta.dirname, "../../../platform");
const work = fs.mkdtempSync(path.join(os.tmpdir(), "conformance-"));
const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0)) await c();
});
afterAll(() => fs.rmSync(work, { recursive: true, force: true }));

function freshRoot(): string {
  return fs.mkdtempSync(path.join(work, "root-"));
}

function envFor(root: string, tpmSpec = "/dev/tpmrm0"): PlatformEnv {
  return {
    paths: { root, tsmReport: path.join(root, "sys/kernel/config/tsm/report") },
    tpm: { spec: tpmSpec, akHandle: 0x81010002 },
    azure: { metadataUrl: "http://127.0.0.1:9", legacyTeeNames: false },
    deadline: new Deadline(15_000),
    log: silentLogger,
  };
}

const pascal = (id: string) => id.replace(/(^|-)([a-z])/g, (_, _d, c: string) => c.toUpperCase());

/** A unix-socket TPM that answers TPM2_NV_ReadPublic of the HCL index with an impossible size. */
async function tpmWithOversizedHclIndex(root: string): Promise<string> {
  const sock = path.join(root, "tpm.sock");
  const pub = new ByteWriter()
    .u32be(HCL_REPORT_NV_INDEX)
    .u16be(TPM_ALG.SHA256)
    .u32be(TPMA_NV.OWNERREAD | TPMA_NV.WRITTEN)
    .sized16be(new Uint8Array(0))
    .u16be(0xffff)
    .finish();
  const params = new ByteWriter().sized16be(pub).sized16be(new Uint8Array(34)).finish();
  const ok = (body: Uint8Array) =>
    new ByteWriter()
      .u16be(0x8001)
      .u32be(10 + body.length)
      .u32be(0)
      .bytes(body)
      .finish();
  const server = net.createServer((c) =>
    c.on("data", (cmd) => {
      const code = cmd.readUInt32BE(6);
      c.write(code === TPM_CC.NV_ReadPublic ? ok(params) : ok(new Uint8Array(0)));
    }),
  );
  await new Promise<void>((resolve) => server.listen(sock, resolve));
  cleanups.push(() => new Promise<void>((resolve) => server.close(() => resolve())));
  return `unix:${sock}`;
}

interface Scenarios {
  /** Make the platform detectable while its report interface is missing or fails; returns the env. */
  broken?: (root: string) => Promise<PlatformEnv>;
  /** An in-process stand-in on which the source is present (else it must be in PRESENT_IN_INTEGRATION). */
  present?: () => Promise<PlatformEnv>;
}

const pki = testPki();
async function fakeTsm(opts: Parameters<typeof FakeTsm.start>[0]): Promise<PlatformEnv> {
  const f = FakeTsm.start(opts);
  cleanups.push(() => f.stop());
  return envFor(f.root);
}

const SCENARIOS: Record<SourceId, Scenarios> = {
  "azure-vtpm": {
    broken: async (root) => envFor(root, await tpmWithOversizedHclIndex(root)),
  },
  snp: {
    broken: async (root) => {
      fs.mkdirSync(path.join(root, "sys/devices/platform/sev-guest"), { recursive: true });
      return envFor(root);
    },
    present: () => fakeTsm(snpProvider(pki)),
  },
  tdx: {
    broken: async (root) => {
      fs.mkdirSync(path.join(root, "proc"));
      fs.writeFileSync(path.join(root, "proc/cpuinfo"), "processor\t: 0\nflags\t\t: fpu tsc tdx_guest\n");
      return envFor(root);
    },
    present: () => fakeTsm({ provider: "tdx_guest", outblobFor: tdxOutblobFor({ version: 4 }) }),
  },
  tpm: {
    broken: async (root) => {
      fs.mkdirSync(path.join(root, "dev/tpmrm0"), { recursive: true }); // a node that cannot be opened as a TPM
      return envFor(root);
    },
  },
  sample: { present: async () => envFor(freshRoot()) },
};

describe("registry", () => {
  it("every platform/<dir>/source.ts exports one make<Id>Source, and the registry holds exactly those sources", async () => {
    const dirs = fs.readdirSync(PLATFORM).filter((d) => fs.existsSync(path.join(PLATFORM, d, "source.ts")));
    const made: string[] = [];
    for (const dir of dirs) {
      const mod = (await import(path.join(PLATFORM, dir, "source.ts"))) as Record<string, unknown>;
      const factories = Object.keys(mod).filter((k) => /^make\w+Source$/.test(k));
      expect(factories, `platform/${dir}/source.ts`).toHaveLength(1);
      const src = (mod[factories[0]!] as () => EvidenceSource)();
      expect(factories[0]).toBe(`make${pascal(src.id)}Source`);
      expect(src.id === dir || src.id.startsWith(`${dir}-`), `${src.id} lives in platform/${dir}`).toBe(true);
      made.push(src.id);
    }
    expect(made.sort()).toEqual(evidenceSources.map((s) => s.id).sort());
    expect(Object.keys(SCENARIOS).sort()).toEqual(made.sort());
  });

  it("every configurable tee belongs to exactly one source; no tee is claimed twice", () => {
    const all = evidenceSources.flatMap((s) => s.tees);
    expect(new Set(all).size).toBe(all.length);
    for (const tee of TEE_CHOICES.filter((t) => t !== "auto"))
      expect(
        evidenceSources.filter((s) => s.tees.includes(tee as never)),
        tee,
      ).toHaveLength(1);
  });

  it("only sample is insecure, and it comes last (never ahead of a real source)", () => {
    expect(evidenceSources.filter((s) => s.insecure).map((s) => s.id)).toEqual(["sample"]);
    expect(evidenceSources.at(-1)!.id).toBe("sample");
  });
});

for (const source of evidenceSources) {
  const scenarios = SCENARIOS[source.id];
  describe(`source ${source.id}`, () => {
    it("on an empty --platform-root tree: absent (secure sources), and collect fails closed", async () => {
      const env = envFor(freshRoot());
      const p = await source.probe(env);
      checkProbe(source, p);
      if (source.insecure) return expect(p.status).toBe("present");
      expect(p.status).toBe("absent");
      const e = await source.collect(env, { runtimeDigest: new Uint8Array(48), tee: source.tees[0]! }).catch((x) => x);
      expect(e).toBeInstanceOf(CvmError);
      expect((e as CvmError).kind).toBe("platform");
    });

    it("on a junk tree (every path the wrong type or garbage): a valid status, never a throw", async () => {
      const root = freshRoot();
      for (const dir of ["dev/sev-guest", "dev/tdx_guest", "dev/tpmrm0", "sys/kernel/config/tsm/report/x"])
        fs.mkdirSync(path.join(root, dir), { recursive: true });
      fs.writeFileSync(path.join(root, "sys/kernel/config/tsm/report/x/provider"), "\u0000".repeat(5000));
      fs.mkdirSync(path.join(root, "proc"));
      fs.writeFileSync(path.join(root, "proc/cpuinfo"), Buffer.alloc(64 * 1024, 0xff));
      checkProbe(source, await source.probe(envFor(root)));
    });

    if (source.insecure)
      it("insecure: needs no hardware, so it can never be broken", () => expect(scenarios.broken).toBeUndefined());
    else
      it("platform detected but its report interface missing or failing: broken (blocks fallback), with a reason", async () => {
        expect(scenarios.broken, "a secure source needs a broken scenario").toBeDefined();
        const p = await source.probe(await scenarios.broken!(freshRoot()));
        checkProbe(source, p);
        expect(p.status).toBe("broken");
      });

    if (scenarios.present)
      it("present on its stand-in: collect returns JSON evidence of the probed tee, bound to the digest", async () => {
        await checkPresentSource(source, await scenarios.present!());
      });
    else
      it("its present + collect checks run in the integration project (they need swtpm)", () => {
        expect(PRESENT_IN_INTEGRATION).toContain(source.id);
      });

    it("describe(), when offered, never throws and returns lines", async () => {
      if (!source.describe) return;
      const lines = await source.describe(envFor(freshRoot()));
      expect(Array.isArray(lines)).toBe(true);
      for (const l of lines) expect(typeof l).toBe("string");
    });
  });
}
