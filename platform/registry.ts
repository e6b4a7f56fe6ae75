// Evidence sources in auto-detection order (docs/ARCHITECTURE.md):
// 1. Azure's paravisor vTPM first: its HCL NV index is a definitive sign that SNP/TDX evidence must
//    go through the paravisor (the guest is not at VMPL 0 / has no direct quote path);
// 2. SNP and TDX, whose evidence is rooted in the CPU vendor;
// 3. a plain TPM (not TEE-bound);
// 4. `sample`, never auto-selected.
// Auto-detection stops at a source whose probe fails (agent/select.ts): no silent downgrade.
import type { EvidenceSource } from "./types.ts";
import { sampleSource } from "./sample/index.ts";
import { snpSource } from "./snp/source.ts";
import { tdxSource } from "./tdx/source.ts";
import { azureVtpmSource } from "./azure/source.ts";
import { tpmSource } from "./tpm/source.ts";

export const sources: EvidenceSource[] = [azureVtpmSource, snpSource, tdxSource, tpmSource, sampleSource];
