// HTTPS with the test PKI: the right CA verifies, an unrelated CA or a same-name CA does not.
import { rmSync } from "node:fs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createPki, type Pki } from "../../helpers/pki.ts";
import { rawRequest, sampleHandshake } from "../../kbs/raw-client.ts";
import { startTestKbs, type TestKbs } from "../../kbs/server.ts";

let pki: Pki;
let kbs: TestKbs;
beforeAll(async () => {
  pki = createPki();
  kbs = await startTestKbs({ tls: pki.tls, resources: { "default/key/root": "k" } });
});
afterAll(async () => {
  await kbs.close();
  rmSync(pki.dir, { recursive: true, force: true });
});

describe("HTTPS test KBS", () => {
  it("serves https://127.0.0.1 and https://localhost with a cert from the test CA", async () => {
    expect(kbs.url).toMatch(/^https:\/\/127\.0\.0\.1:\d+$/);
    expect(kbs.caPem).toBe(pki.caPem);
    const hs = await sampleHandshake(kbs.url, { ca: pki.caPem });
    expect(hs.token.split(".")).toHaveLength(3);
    expect((await rawRequest(`https://localhost:${kbs.port}/healthz`, { ca: pki.caPem })).status).toBe(200);
  });

  it.each([
    ["no CA (system roots)", () => undefined],
    ["an unrelated CA", () => pki.wrongCaPem],
    ["a CA with the same subject DN but another key", () => pki.sameNameWrongCaPem],
  ])("rejects %s", async (_n, ca) => {
    await expect(rawRequest(`${kbs.url}/healthz`, { ca: ca() })).rejects.toThrow(
      /certificate|self.signed|unable to verify/i,
    );
  });
});
