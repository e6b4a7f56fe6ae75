// Well-known Azure CVM vTPM handles and limits (docs/spec/azure-hcl.md §1–§2).

/** NV index holding the HCL report (read with owner authorization). */
export const HCL_REPORT_NV_INDEX = 0x01400001;
/** NV index the guest writes report data to; the paravisor copies it into the HCL `user-data`. */
export const REPORT_DATA_NV_INDEX = 0x01400002;
/** Persistent RSA AK whose public key is the HCL runtime claims' `HCLAkPub`. */
export const AZURE_AK_HANDLE = 0x81000003;
/** PCRs quoted and reported (SHA-256 bank), as trustee's verifier expects. */
export const QUOTED_PCRS = Array.from({ length: 24 }, (_, i) => i);
/** trustee's v2 evidence adds the HCL user-data check (docs/spec/kbs-protocol.md §4.5). */
export const EVIDENCE_VERSION = 2;
/** The NV areas seen in practice are 2048 or 2600 bytes; anything past 8 KiB is not an HCL report. */
export const MAX_HCL_NV_SIZE = 8 * 1024;
