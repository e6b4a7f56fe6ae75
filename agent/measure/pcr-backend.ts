// The two things measurement needs from a TPM, behind a tiny interface so measure.ts is testable
// without one. The implementation is the shared TPM client (platform/tpm/operations.ts).
import { openTpm, type Tpm } from "../../platform/tpm/client.ts";
import type { BankDigest } from "../../platform/tpm/commands/pcr.ts";
import { getPcrBanks, pcrExtend } from "../../platform/tpm/operations.ts";
import type { Deadline } from "../../platform/util/deadline.ts";
import type { Logger } from "../../platform/util/log.ts";

export interface PcrBackend {
  readonly description: string;
  /** TPM_ALG ids of the banks in which `pcr` is active (selected in the allocation bitmap). */
  activeBanks(pcr: number): Promise<number[]>;
  extend(pcr: number, digests: BankDigest[]): Promise<void>;
  close(): void;
}

class SharedClientBackend implements PcrBackend {
  constructor(private readonly tpm: Tpm) {}
  get description(): string {
    return this.tpm.description;
  }
  async activeBanks(pcr: number): Promise<number[]> {
    return (await getPcrBanks(this.tpm)).filter((b) => b.pcrs.includes(pcr)).map((b) => b.hash);
  }
  extend(pcr: number, digests: BankDigest[]): Promise<void> {
    return pcrExtend(this.tpm, pcr, digests);
  }
  close(): void {
    this.tpm.close();
  }
}

export async function openPcrBackend(spec: string, root: string, deadline: Deadline, log: Logger): Promise<PcrBackend> {
  return new SharedClientBackend(await openTpm(spec, deadline, log, { root }));
}
