// vTPM steps against a scripted TPM: what a hostile host-side vTPM can answer is bounded.
import { describe, expect, it } from "vitest";
import { HCL_REPORT_NV_INDEX } from "../../../platform/azure/constants.ts";
import { readHclReportBlob } from "../../../platform/azure/vtpm.ts";
import { Tpm } from "../../../platform/tpm/client.ts";
import { TPMA_NV, TPM_ALG } from "../../../platform/tpm/constants.ts";
import type { TpmTransport } from "../../../platform/tpm/transport/types.ts";
import { Deadline } from "../../../platform/util/deadline.ts";
import { silentLogger } from "../../../platform/util/log.ts";
import { ByteWriter } from "../../../platform/util/reader.ts";

function response(params: Uint8Array, rc = 0): Uint8Array {
  return new ByteWriter()
    .u16be(0x8001)
    .u32be(10 + params.length)
    .u32be(rc)
    .bytes(params)
    .finish();
}

function nvPublicResponse(dataSize: number, attributes: number): Uint8Array {
  const pub = new ByteWriter()
    .u32be(HCL_REPORT_NV_INDEX)
    .u16be(TPM_ALG.SHA256)
    .u32be(attributes)
    .sized16be(new Uint8Array(0))
    .u16be(dataSize)
    .finish();
  return response(new ByteWriter().sized16be(pub).sized16be(new Uint8Array(34)).finish());
}

function scripted(answers: Uint8Array[]): { tpm: Tpm; sent: Uint8Array[] } {
  const sent: Uint8Array[] = [];
  const transport: TpmTransport = {
    description: "scripted TPM",
    async transmit(cmd) {
      sent.push(cmd);
      const a = answers.shift();
      if (!a) throw new Error("scripted TPM: no more answers");
      return a;
    },
    close() {},
  };
  return { tpm: new Tpm(transport, new Deadline(5_000), silentLogger), sent };
}

describe("readHclReportBlob", () => {
  it("absent index (TPM_RC_HANDLE) → undefined: not an Azure CVM", async () => {
    const { tpm } = scripted([response(new Uint8Array(0), 0x18b)]);
    expect(await readHclReportBlob(tpm)).toBeUndefined();
  });

  it("an index claiming 64 KiB is refused before anything is read", async () => {
    const { tpm, sent } = scripted([nvPublicResponse(0xffff, TPMA_NV.OWNERREAD | TPMA_NV.WRITTEN)]);
    await expect(readHclReportBlob(tpm)).rejects.toThrow(/65535 bytes; an HCL report is at most 8192/);
    expect(sent.length).toBe(1);
  });

  it("a never-written index is refused", async () => {
    const { tpm } = scripted([nvPublicResponse(2600, TPMA_NV.OWNERREAD)]);
    await expect(readHclReportBlob(tpm)).rejects.toThrow(/never written/);
  });

  it("other TPM errors propagate (fail closed)", async () => {
    const { tpm } = scripted([response(new Uint8Array(0), 0x101)]);
    await expect(readHclReportBlob(tpm)).rejects.toThrow(/NV_ReadPublic/);
  });
});
