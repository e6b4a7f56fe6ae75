// Typed TPM operations built on the codecs: what other features call (README.md lists them).
import { createHash } from "node:crypto";
import { CvmError } from "../util/errors.ts";
import { TPMA_NV, TPM_ALG, TPM_CAP, TPM_HR, TPM_PT, TPM_RH, algName, hex32 } from "./constants.ts";
import type { Tpm } from "./client.ts";
import type { PasswordAuth, PcrSelection } from "./marshal.ts";
import { TPM_RC, isTpmRc } from "./rc.ts";
import type { NvPublic } from "./structures.ts";
import { decodeGetCapability, encodeGetCapability } from "./commands/capability.ts";
import { decodePcrExtend, decodePcrRead, encodePcrExtend, encodePcrRead, type BankDigest } from "./commands/pcr.ts";
import {
  decodeCreatePrimary,
  decodeEvictControl,
  decodeFlushContext,
  decodeReadPublic,
  encodeCreatePrimary,
  encodeEvictControl,
  encodeFlushContext,
  encodeReadPublic,
  type CreatePrimaryResponse,
  type ReadPublicResponse,
} from "./commands/object.ts";
import { decodeQuote, encodeQuote, type QuoteRequest, type QuoteResponse } from "./commands/quote.ts";
import {
  decodeNoParams,
  decodeNvRead,
  decodeNvReadPublic,
  encodeNvDefineSpace,
  encodeNvRead,
  encodeNvReadPublic,
  encodeNvUndefineSpace,
  encodeNvWrite,
} from "./commands/nv.ts";

/** Pages are bounded so a TPM that always claims moreData cannot keep us looping. */
const MAX_CAPABILITY_PAGES = 32;

// ---- capabilities ------------------------------------------------------------------------------

/** All fixed/variable TPM properties (TPM_PT_FIXED onwards) as property → value. */
export async function getProperties(tpm: Tpm): Promise<Map<number, number>> {
  const cached = tpm.cache.get("properties") as Map<number, number> | undefined;
  if (cached) return cached;
  const out = new Map<number, number>();
  let next = TPM_PT.FAMILY_INDICATOR;
  for (let page = 0; page < MAX_CAPABILITY_PAGES; page++) {
    const rsp = await tpm.execute("GetCapability", encodeGetCapability(TPM_CAP.TPM_PROPERTIES, next, 64), (r) =>
      decodeGetCapability(r, TPM_CAP.TPM_PROPERTIES),
    );
    if (rsp.data.capability !== TPM_CAP.TPM_PROPERTIES) break;
    let last = next - 1;
    for (const p of rsp.data.properties) {
      out.set(p.property, p.value);
      last = Math.max(last, p.property);
    }
    if (!rsp.moreData || last < next) break;
    next = last + 1;
  }
  tpm.cache.set("properties", out);
  return out;
}

/** Allocated PCR banks (a bank with an empty bitmap is allocated but inactive). */
export async function getPcrBanks(tpm: Tpm): Promise<PcrSelection[]> {
  const rsp = await tpm.execute("GetCapability", encodeGetCapability(TPM_CAP.PCRS, 0, 1), (r) =>
    decodeGetCapability(r, TPM_CAP.PCRS),
  );
  return rsp.data.capability === TPM_CAP.PCRS ? rsp.data.banks : [];
}

/** Hash algorithms of the active PCR banks, in the TPM's order (e.g. [TPM_ALG.SHA256]). */
export async function getActiveBanks(tpm: Tpm): Promise<number[]> {
  return (await getPcrBanks(tpm)).filter((b) => b.pcrs.length > 0).map((b) => b.hash);
}

/** Handles in the range of `first` (TPM_HR.NV_INDEX, TPM_HR.PERSISTENT, ...). */
export async function getHandles(tpm: Tpm, first: number): Promise<number[]> {
  const out: number[] = [];
  const range = first >>> 24;
  let next = first;
  for (let page = 0; page < MAX_CAPABILITY_PAGES; page++) {
    const rsp = await tpm.execute("GetCapability", encodeGetCapability(TPM_CAP.HANDLES, next, 256), (r) =>
      decodeGetCapability(r, TPM_CAP.HANDLES),
    );
    if (rsp.data.capability !== TPM_CAP.HANDLES) break;
    const inRange = rsp.data.handles.filter((h) => h >>> 24 === range && h >= next);
    out.push(...inRange);
    if (!rsp.moreData || inRange.length === 0) break;
    next = inRange[inRange.length - 1]! + 1;
  }
  return out;
}

export async function nvBufferMax(tpm: Tpm): Promise<number> {
  const v = (await getProperties(tpm)).get(TPM_PT.NV_BUFFER_MAX);
  // Bounded to what fits in one 4 KiB response; 1024 is what the Azure/GCE clients assume.
  return v && v >= 16 ? Math.min(v, 2048) : 1024;
}

// ---- PCRs --------------------------------------------------------------------------------------

export interface PcrValue {
  hash: number;
  pcr: number;
  digest: Uint8Array;
}

/**
 * Read every selected PCR. A TPM returns at most 8 digests per PCR_Read, so this loops, removing
 * what came back, and restarts (bounded) if the PCR update counter moved between chunks.
 */
export async function pcrRead(tpm: Tpm, selection: PcrSelection[]): Promise<PcrValue[]> {
  for (let attempt = 0; attempt < 3; attempt++) {
    const values: PcrValue[] = [];
    let remaining = selection
      .map((s) => ({ hash: s.hash, pcrs: [...new Set(s.pcrs)].sort((a, b) => a - b) }))
      .filter((s) => s.pcrs.length);
    let counter: number | undefined;
    let consistent = true;
    while (remaining.length) {
      const rsp = await tpm.execute("PCR_Read", encodePcrRead(remaining), decodePcrRead);
      if (counter !== undefined && rsp.updateCounter !== counter) {
        consistent = false;
        break;
      }
      counter = rsp.updateCounter;
      let i = 0;
      let progressed = false;
      for (const s of rsp.selection) {
        const want = remaining.find((r) => r.hash === s.hash);
        for (const pcr of s.pcrs) {
          const digest = rsp.digests[i++]!;
          if (!want || !want.pcrs.includes(pcr))
            throw new CvmError(
              "evidence",
              `TPM2_PCR_Read returned ${algName(s.hash)} PCR ${pcr}, which was not requested`,
            );
          want.pcrs = want.pcrs.filter((p) => p !== pcr);
          values.push({ hash: s.hash, pcr, digest });
          progressed = true;
        }
      }
      if (!progressed) {
        const missing = remaining.map((r) => `${algName(r.hash)}:${r.pcrs.join(",")}`).join(" ");
        throw new CvmError("platform", `TPM2_PCR_Read returned nothing for ${missing}`, {
          hint: "is that PCR bank active? see `detect`",
        });
      }
      remaining = remaining.filter((r) => r.pcrs.length);
    }
    if (consistent) return sortValues(values, selection);
    tpm.log.debug("PCRs changed while reading them; reading again", { attempt: attempt + 1 });
  }
  throw new CvmError("platform", "PCRs kept changing while being read (3 attempts)");
}

function sortValues(values: PcrValue[], selection: PcrSelection[]): PcrValue[] {
  const bankOrder = selection.map((s) => s.hash);
  return values.sort((a, b) => bankOrder.indexOf(a.hash) - bankOrder.indexOf(b.hash) || a.pcr - b.pcr);
}

/** One bank's PCRs in the order given. */
export async function pcrReadBank(tpm: Tpm, hash: number, pcrs: number[]): Promise<Uint8Array[]> {
  const values = await pcrRead(tpm, [{ hash, pcrs }]);
  return pcrs.map((p) => values.find((v) => v.pcr === p)!.digest);
}

/** Extend `pcr` with the given per-bank digests (only the banks supplied are extended). */
export async function pcrExtend(tpm: Tpm, pcr: number, digests: BankDigest[] | Map<number, Uint8Array>): Promise<void> {
  const list = Array.isArray(digests) ? digests : [...digests].map(([hashAlg, digest]) => ({ hashAlg, digest }));
  await tpm.execute("PCR_Extend", encodePcrExtend(pcr, list), decodePcrExtend);
}

const NODE_HASH: Record<number, string> = {
  [TPM_ALG.SHA1]: "sha1",
  [TPM_ALG.SHA256]: "sha256",
  [TPM_ALG.SHA384]: "sha384",
  [TPM_ALG.SHA512]: "sha512",
};

/** Per-bank digest of `data` for every bank in `banks` (node:crypto; SM3 is not supported). */
export function digestsFor(banks: number[], data: Uint8Array): BankDigest[] {
  return banks.map((hashAlg) => {
    const name = NODE_HASH[hashAlg];
    if (!name) throw new CvmError("platform", `cannot hash for PCR bank ${algName(hashAlg)}`);
    return { hashAlg, digest: new Uint8Array(createHash(name).update(data).digest()) };
  });
}

/** Measure `data` into `pcr` in every active bank (the unlock feature's PCR 15 measurement). */
export async function measureIntoPcr(tpm: Tpm, pcr: number, data: Uint8Array): Promise<BankDigest[]> {
  const banks = await getActiveBanks(tpm);
  if (!banks.length) throw new CvmError("platform", `${tpm.description} reports no active PCR bank`);
  const digests = digestsFor(banks, data);
  await pcrExtend(tpm, pcr, digests);
  return digests;
}

// ---- keys --------------------------------------------------------------------------------------

export async function createPrimary(
  tpm: Tpm,
  hierarchy: number,
  template: Uint8Array,
  auth?: PasswordAuth,
): Promise<CreatePrimaryResponse> {
  return tpm.execute("CreatePrimary", encodeCreatePrimary(hierarchy, template, auth), decodeCreatePrimary);
}

export async function readPublic(tpm: Tpm, handle: number): Promise<ReadPublicResponse> {
  return tpm.execute("ReadPublic", encodeReadPublic(handle), decodeReadPublic);
}

/** ReadPublic, or undefined when nothing lives at `handle` (persistent: HANDLE; transient: REFERENCE_H0). */
export async function readPublicIfPresent(tpm: Tpm, handle: number): Promise<ReadPublicResponse | undefined> {
  try {
    return await readPublic(tpm, handle);
  } catch (e) {
    if (isTpmRc(e, TPM_RC.HANDLE) || isTpmRc(e, TPM_RC.REFERENCE_H0)) return undefined;
    throw e;
  }
}

export async function flushContext(tpm: Tpm, handle: number): Promise<void> {
  await tpm.execute("FlushContext", encodeFlushContext(handle), decodeFlushContext);
}

/** Create a primary key, run `fn` with it, and always flush it (also when `fn` throws). */
export async function withPrimary<T>(
  tpm: Tpm,
  hierarchy: number,
  template: Uint8Array,
  fn: (key: CreatePrimaryResponse) => Promise<T>,
): Promise<T> {
  const key = await createPrimary(tpm, hierarchy, template);
  try {
    return await fn(key);
  } finally {
    try {
      await flushContext(tpm, key.handle);
    } catch (e) {
      tpm.log.warning("could not flush transient TPM key", { handle: hex32(key.handle), error: (e as Error).message });
    }
  }
}

/** Persist a transient key at `persistentHandle` (owner authorization), e.g. an AK at 0x81010002. */
export async function evictControl(
  tpm: Tpm,
  objectHandle: number,
  persistentHandle: number,
  auth: number = TPM_RH.OWNER,
): Promise<void> {
  await tpm.execute("EvictControl", encodeEvictControl(auth, objectHandle, persistentHandle), decodeEvictControl);
}

export async function quote(tpm: Tpm, req: QuoteRequest): Promise<QuoteResponse> {
  return tpm.execute("Quote", encodeQuote(req), decodeQuote);
}

// ---- NV ----------------------------------------------------------------------------------------

export async function nvReadPublic(tpm: Tpm, index: number): Promise<NvPublic> {
  return (await tpm.execute("NV_ReadPublic", encodeNvReadPublic(index), decodeNvReadPublic)).nvPublic;
}

/** NV_ReadPublic, or undefined when the index is not defined. */
export async function nvReadPublicIfPresent(tpm: Tpm, index: number): Promise<NvPublic | undefined> {
  try {
    return await nvReadPublic(tpm, index);
  } catch (e) {
    if (isTpmRc(e, TPM_RC.HANDLE)) return undefined;
    throw e;
  }
}

export interface NvReadOptions {
  /** Defaults: the index itself if it allows AUTHREAD, else TPM_RH_OWNER. */
  authHandle?: number;
  offset?: number;
  /** Bytes to read; default the rest of the index. */
  size?: number;
}

/** Read an NV index, chunked at TPM_PT_NV_BUFFER_MAX. */
export async function nvRead(tpm: Tpm, index: number, opts: NvReadOptions = {}): Promise<Uint8Array> {
  const pub = await nvReadPublic(tpm, index);
  if (pub.nvIndex !== index)
    throw new CvmError("evidence", `TPM2_NV_ReadPublic(${hex32(index)}) described index ${hex32(pub.nvIndex)}`);
  if (!(pub.attributes & TPMA_NV.WRITTEN))
    throw new CvmError("platform", `NV index ${hex32(index)} is defined but was never written`);
  const offset = opts.offset ?? 0;
  const size = opts.size ?? pub.dataSize - offset;
  if (offset < 0 || size < 0 || offset + size > pub.dataSize)
    throw new CvmError(
      "internal",
      `NV index ${hex32(index)}: range ${offset}+${size} outside its ${pub.dataSize} bytes`,
    );
  const authHandle = opts.authHandle ?? (pub.attributes & TPMA_NV.AUTHREAD ? index : TPM_RH.OWNER);
  const chunk = await nvBufferMax(tpm);
  const out = new Uint8Array(size);
  for (let done = 0; done < size;) {
    const n = Math.min(chunk, size - done);
    const part = await tpm.execute("NV_Read", encodeNvRead(authHandle, index, n, offset + done), (r) =>
      decodeNvRead(r, n),
    );
    out.set(part, done);
    done += n;
  }
  return out;
}

export interface NvDefineOptions {
  index: number;
  size: number;
  /** TPMA_NV bits; default OWNERWRITE|OWNERREAD|AUTHREAD|NO_DA (ordinary index). */
  attributes?: number;
  authHandle?: number;
  nameAlg?: number;
}

export async function nvDefine(tpm: Tpm, o: NvDefineOptions): Promise<void> {
  const pub: NvPublic = {
    nvIndex: o.index,
    nameAlg: o.nameAlg ?? TPM_ALG.SHA256,
    attributes: o.attributes ?? TPMA_NV.OWNERWRITE | TPMA_NV.OWNERREAD | TPMA_NV.AUTHREAD | TPMA_NV.NO_DA,
    authPolicy: new Uint8Array(0),
    dataSize: o.size,
  };
  await tpm.execute("NV_DefineSpace", encodeNvDefineSpace(o.authHandle ?? TPM_RH.OWNER, pub), (r) =>
    decodeNoParams("NV_DefineSpace", r),
  );
}

export async function nvUndefine(tpm: Tpm, index: number, authHandle: number = TPM_RH.OWNER): Promise<void> {
  await tpm.execute("NV_UndefineSpace", encodeNvUndefineSpace(authHandle, index), (r) =>
    decodeNoParams("NV_UndefineSpace", r),
  );
}

/** Write `data` at `offset` (chunked); authHandle defaults to TPM_RH_OWNER (OWNERWRITE indices such as Azure's 0x01400002). */
export async function nvWrite(
  tpm: Tpm,
  index: number,
  data: Uint8Array,
  opts: { authHandle?: number; offset?: number } = {},
): Promise<void> {
  const chunk = await nvBufferMax(tpm);
  const authHandle = opts.authHandle ?? TPM_RH.OWNER;
  const base = opts.offset ?? 0;
  for (let done = 0; done < data.length || (done === 0 && data.length === 0);) {
    const part = data.subarray(done, done + chunk);
    await tpm.execute("NV_Write", encodeNvWrite(authHandle, index, part, base + done), (r) =>
      decodeNoParams("NV_Write", r),
    );
    done += part.length;
    if (part.length === 0) break;
  }
}
