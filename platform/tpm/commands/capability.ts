// TPM2_GetCapability codec: TPM properties, allocated PCR banks, handle lists.
import { ByteReader, ByteWriter } from "../../util/reader.ts";
import { TPM_CAP, TPM_CC } from "../constants.ts";
import { buildCommand, parseResponse, readPcrSelection, type PcrSelection } from "../marshal.ts";

export type CapabilityData =
  | { capability: typeof TPM_CAP.TPM_PROPERTIES; properties: { property: number; value: number }[] }
  | { capability: typeof TPM_CAP.PCRS; banks: PcrSelection[] }
  | { capability: typeof TPM_CAP.HANDLES; handles: number[] };

export interface CapabilityResponse {
  moreData: boolean;
  data: CapabilityData;
}

/** Upper bound on list lengths we accept from a TPM (MAX_CAP_DATA is ~1 KiB on real TPMs). */
const MAX_ITEMS = 512;

export function encodeGetCapability(capability: number, property: number, count: number): Uint8Array {
  return buildCommand({
    name: "GetCapability",
    code: TPM_CC.GetCapability,
    params: new ByteWriter().u32be(capability).u32be(property).u32be(count).finish(),
  });
}

export function decodeGetCapability(rsp: Uint8Array, expected: number): CapabilityResponse {
  const { params: r } = parseResponse(rsp, { name: "GetCapability", sessions: false });
  const mdAt = r.offset;
  const md = r.u8("moreData");
  if (md > 1) r.fail("moreData", `TPMI_YES_NO must be 0 or 1, got ${md}`, mdAt);
  const capAt = r.offset;
  const capability = r.u32be("capability");
  if (capability !== expected)
    r.fail("capability", `asked for capability ${expected}, TPM answered ${capability}`, capAt);
  let data: CapabilityData;
  switch (capability) {
    case TPM_CAP.TPM_PROPERTIES: {
      const n = count(r, "tpmProperties.count");
      const properties = [];
      for (let i = 0; i < n; i++)
        properties.push({
          property: r.u32be(`tpmProperties[${i}].property`),
          value: r.u32be(`tpmProperties[${i}].value`),
        });
      data = { capability, properties };
      break;
    }
    case TPM_CAP.PCRS:
      data = { capability, banks: readPcrSelection(r, "assignedPCR") };
      break;
    case TPM_CAP.HANDLES: {
      const n = count(r, "handles.count");
      const handles = [];
      for (let i = 0; i < n; i++) handles.push(r.u32be(`handles[${i}]`));
      data = { capability, handles };
      break;
    }
    default:
      return r.fail("capability", `capability ${capability} is not decoded by this client`, capAt);
  }
  r.end("parameters");
  return { moreData: md === 1, data };
}

function count(r: ByteReader, field: string): number {
  const at = r.offset;
  const n = r.u32be(field);
  if (n > MAX_ITEMS) r.fail(field, `${n} entries exceeds the limit of ${MAX_ITEMS}`, at);
  return n;
}
