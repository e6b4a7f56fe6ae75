// Evidence sources in auto-detection order (docs/ARCHITECTURE.md):
// 1. Azure's paravisor vTPM first: its HCL NV index is a definitive sign that SNP/TDX evidence must
//    go through the paravisor (the guest is not at VMPL 0 / has no direct quote path);
// 2. SNP and TDX, whose evidence is rooted in the CPU vendor;
// 3. a plain TPM (not TEE-bound);
// 4. `sample`, never auto-selected.
// Auto-detection stops at a broken source (platform/types.ts ProbeStatus): no silent downgrade.
import type { EvidenceSource } from "./types.ts";
import { makeSampleSource } from "./sample/source.ts";
import { makeSnpSource } from "./snp/source.ts";
import { makeTdxSource } from "./tdx/source.ts";
import { makeAzureVtpmSource } from "./azure/source.ts";
import { makeTpmSource } from "./tpm/source.ts";

export const evidenceSources: readonly EvidenceSource[] = Object.freeze([
  makeAzureVtpmSource(),
  makeSnpSource(),
  makeTdxSource(),
  makeTpmSource(),
  makeSampleSource(),
]);
