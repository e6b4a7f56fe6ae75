// A TPM reset under the agent (a vTPM restarted by the host mid-run): the TPM answers
// TPM_RC_INITIALIZE until someone runs TPM2_Startup. The agent must not retry or hang: one typed
// error that names the code and says what to do.
import { describe, expect, it } from "vitest";
import { Tpm } from "../../../platform/tpm/client.ts";
import { getProperties } from "../../../platform/tpm/operations.ts";
import { TpmError } from "../../../platform/tpm/rc.ts";
import { Deadline } from "../../../platform/util/deadline.ts";
import { silentLogger } from "../../../platform/util/log.ts";
import { FakeTransport, frame } from "./fake-tpm.ts";

describe("TPM reset mid-run", () => {
  it("a TPM that was reset answers TPM_RC_INITIALIZE: not retried, a TpmError with the Startup hint", async () => {
    let n = 0;
    const propsBody = () => Buffer.from("0000000006000000010000010549424d00", "hex");
    // the first command works, then the TPM "reboots"
    const t = new FakeTransport(() => (n++ === 0 ? frame(0, propsBody()) : frame(0x100)));
    const tpm = new Tpm(t, new Deadline(10_000), silentLogger);
    await getProperties(tpm);
    tpm.cache.clear(); // ask the TPM again, as a later step of the run would
    const e = await getProperties(tpm).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(TpmError);
    expect((e as TpmError).message).toMatch(/TPM_RC_INITIALIZE/);
    expect((e as TpmError).hint).toMatch(/TPM2_Startup/);
    expect(t.sent).toHaveLength(2);
  });
});
