// init-data as a configuration layer (agent/config/load.ts): the KBS of aa.toml/cdh.toml and our own
// cvm-unlock.toml/.json. It sits above the trusted file and below the kernel cmdline, LUKS token and
// flags, and only when the trusted configuration says init-data may configure this image
// (init_data.configure: generic images, whose trust in these values comes from the KBS policy's
// check of the init-data digest). It can never widen what is allowed (sample, plain HTTP, TPM).
import type { Logger } from "../../platform/util/log.ts";
import { guardLayer } from "../config/layers/layer-guard.ts";
import type { ConfigLayer, JsonObject } from "../config/load.ts";
import type { Config } from "../config/schema.ts";
import { describeInitData, initDataSettings, type InitDataDocument } from "./document.ts";

/** What init-data may set: where to attest, what to fetch (disk keys, the SSH host identity), which volumes to open. */
export const INIT_DATA_SETTABLE = [
  "kbs.endpoints",
  "kbs.ca_pem",
  "kbs.request_timeout_s",
  "kbs.tee_key",
  "resource",
  "deadline_s",
  "platform.tee",
  "unlock.volumes",
  "unlock.device_timeout_s",
  "unlock.require_pins",
  "identity.ssh",
  "verity.resource",
];

function plainJson(v: unknown): JsonObject {
  // TOML tables are null-prototype objects and may hold dates: make them the JSON the schema reads.
  return JSON.parse(JSON.stringify(v)) as JsonObject;
}

export function initDataLayerData(doc: InitDataDocument): JsonObject {
  const s = initDataSettings(doc);
  const own = s.config ? plainJson(s.config) : {};
  const kbs: JsonObject = {
    ...(s.kbsUrl !== undefined ? { endpoints: [s.kbsUrl] } : {}),
    ...(s.kbsCertPem !== undefined ? { ca_pem: s.kbsCertPem } : {}),
    ...(typeof own.kbs === "object" && own.kbs !== null && !Array.isArray(own.kbs) ? own.kbs : {}),
  };
  const data: JsonObject = { ...own };
  if (Object.keys(kbs).length) data.kbs = kbs;
  return data;
}

export function initDataLayer(doc: InitDataDocument, base: Config, log: Logger): ConfigLayer | null {
  const data = initDataLayerData(doc);
  if (Object.keys(data).length === 0) return null;
  if (!base.init_data.configure) {
    log.notice(
      `init-data from ${doc.origin} carries settings (${Object.keys(data).join(", ")}); they are not used: ` +
        "the trusted config does not set init_data.configure",
    );
    return null;
  }
  const source = `init-data:${doc.origin} ${describeInitData(doc)}`;
  return { source, data, guard: guardLayer(source, INIT_DATA_SETTABLE) };
}
