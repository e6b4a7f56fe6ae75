// Evidence sources in auto-detection order (docs/ARCHITECTURE.md explains the order):
// hardware TEEs first (their evidence is rooted in the CPU vendor), then Azure's paravisor vTPM
// (SNP/TDX reached through the HCL report), then a plain TPM (not TEE-bound), and `sample` last —
// `sample` is never auto-selected.
import type { EvidenceSource } from "./types.ts";
import { sampleSource } from "./sample/index.ts";
import { snpSource } from "./snp/source.ts";
import { tdxSource } from "./tdx/source.ts";
import { azureVtpmSource } from "./azure/source.ts";
import { tpmSource } from "./tpm/source.ts";

export const sources: EvidenceSource[] = [snpSource, tdxSource, azureVtpmSource, tpmSource, sampleSource];
