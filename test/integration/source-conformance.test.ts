// The present + collect half of the evidence-source contract for the sources that need a TPM
// (test/helpers/source-contract.ts; the rest of the contract is test/unit/platform/conformance.test.ts).
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { afterAll, beforeAll, describe, it } from "vitest";
import { evidenceSources } from "../../platform/registry.ts";
import type { PlatformEnv } from "../../platform/types.ts";
import { Deadline } from "../../platform/util/deadline.ts";
import { silentLogger } from "../../platform/util/log.ts";
import { startFakeMetadata } from "../helpers/azure-metadata.ts";
import { startAzureVtpm } from "../helpers/azure-vtpm.ts";
import { checkPresentSource, PRESENT_IN_INTEGRATION } from "../helpers/source-contract.ts";
import { startSwtpm, swtpmAvailable } from "../helpers/swtpm.ts";

let root: string;
const stops: (() => Promise<void>)[] = [];
beforeAll(() => {
  root = fs.mkdtempSync(path.join(os.tmpdir(), "source-conformance-"));
});
afterAll(async () => {
  for (const s of stops.splice(0)) await s();
  fs.rmSync(root, { recursive: true, force: true });
});

function envFor(tpmSpec: string, metadataUrl = "http://127.0.0.1:9"): PlatformEnv {
  return {
    paths: { root, tsmReport: path.join(root, "sys/kernel/config/tsm/report") },
    tpm: { spec: tpmSpec, akHandle: 0x81010002 },
    azure: { metadataUrl, legacyTeeNames: false },
    deadline: new Deadline(60_000),
    log: silentLogger,
  };
}

/** A platform on which the source is present, started fresh for it. */
const STAND_INS: Record<(typeof PRESENT_IN_INTEGRATION)[number], () => Promise<PlatformEnv>> = {
  tpm: async () => {
    const sw = await startSwtpm();
    stops.push(() => sw.stop());
    return envFor(sw.spec);
  },
  "azure-vtpm": async () => {
    const vtpm = await startAzureVtpm({ tee: "snp" });
    const md = await startFakeMetadata({ vcekPem: vtpm.pki.vcekPem, chainPem: vtpm.pki.askPem + vtpm.pki.arkPem });
    stops.push(
      () => md.close(),
      () => vtpm.stop(),
    );
    return envFor(vtpm.spec, md.url);
  },
};

describe.skipIf(!swtpmAvailable())("evidence-source contract: present + collect on swtpm stand-ins", () => {
  for (const id of PRESENT_IN_INTEGRATION)
    it(`${id}: evidence of the probed tee, pure JSON, bound to the digest, over-long digest refused`, async () => {
      const source = evidenceSources.find((s) => s.id === id)!;
      await checkPresentSource(source, await STAND_INS[id]());
    });
});
