// TPM2_PCR_Read and TPM2_PCR_Extend codecs.
import { ByteWriter } from "../../util/reader.ts";
import { DIGEST_SIZE, TPM_CC, algName } from "../constants.ts";
import {
  buildCommand,
  parseResponse,
  readDigestList,
  readPcrSelection,
  writePcrSelection,
  type PcrSelection,
} from "../marshal.ts";
import { CvmError } from "../../util/errors.ts";

export interface PcrReadResponse {
  updateCounter: number;
  /** What the TPM actually returned (at most 8 digests; may be a subset of the request). */
  selection: PcrSelection[];
  digests: Uint8Array[];
}

export function encodePcrRead(sel: PcrSelection[]): Uint8Array {
  return buildCommand({
    name: "PCR_Read",
    code: TPM_CC.PCR_Read,
    params: writePcrSelection(new ByteWriter(), sel).finish(),
  });
}

export function decodePcrRead(rsp: Uint8Array): PcrReadResponse {
  const { params: r } = parseResponse(rsp, { name: "PCR_Read", sessions: false });
  const updateCounter = r.u32be("pcrUpdateCounter");
  const selAt = r.offset;
  const selection = readPcrSelection(r, "pcrSelectionOut");
  const digAt = r.offset;
  const digests = readDigestList(r, "pcrValues");
  r.end("parameters");
  const selected = selection.reduce((n, s) => n + s.pcrs.length, 0);
  if (selected !== digests.length)
    r.fail("pcrValues.count", `${digests.length} digests for ${selected} selected PCRs`, digAt);
  let i = 0;
  for (const s of selection) {
    const size = DIGEST_SIZE[s.hash];
    if (size === undefined) r.fail("pcrSelectionOut.hash", `unknown PCR bank 0x${s.hash.toString(16)}`, selAt);
    for (const _ of s.pcrs) {
      const d = digests[i++]!;
      if (d.length !== size)
        r.fail(
          `pcrValues[${i - 1}]`,
          `${d.length}-byte digest in the ${algName(s.hash)} bank (expected ${size})`,
          digAt,
        );
    }
  }
  return { updateCounter, selection, digests };
}

export interface BankDigest {
  hashAlg: number;
  digest: Uint8Array;
}

export function encodePcrExtend(pcr: number, digests: BankDigest[]): Uint8Array {
  if (!Number.isInteger(pcr) || pcr < 0 || pcr > 31)
    throw new CvmError("internal", `PCR_Extend: PCR ${pcr} out of range`);
  const w = new ByteWriter().u32be(digests.length);
  for (const d of digests) {
    const size = DIGEST_SIZE[d.hashAlg];
    if (size !== d.digest.length)
      throw new CvmError("internal", `PCR_Extend: ${d.digest.length}-byte digest for bank ${algName(d.hashAlg)}`);
    w.u16be(d.hashAlg).bytes(d.digest);
  }
  return buildCommand({ name: "PCR_Extend", code: TPM_CC.PCR_Extend, handles: [pcr], auths: [{}], params: w.finish() });
}

export function decodePcrExtend(rsp: Uint8Array): void {
  const { params } = parseResponse(rsp, { name: "PCR_Extend", sessions: true });
  params.end("parameters");
}
