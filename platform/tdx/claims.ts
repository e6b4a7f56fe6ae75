// trustee's TDX claims shape (deps/verifier/src/tdx/claims.rs; expected output in
// parse_tdx_claims_expected.json): every field hex of its raw little-endian bytes. Used by the test
// KBS verifier and by `inspect --trustee`, so people see what a trustee policy will see.
import { b64, fitTo, hex } from "../util/bytes.ts";
import { algorithmName, hashFunction } from "../eventlog/algorithms.ts";
import type { EventLog } from "../eventlog/parse.ts";
import { ByteWriter } from "../util/reader.ts";
import { decodeTdAttributes, type TdxQuote } from "./quote.ts";

const le16 = (v: number) => hex(new ByteWriter().u16le(v).finish());
const le32 = (v: number) => hex(new ByteWriter().u32le(v).finish());
const TRUSTEE_ALG_NAMES: Record<string, string> = {
  sha1: "SHA-1",
  sha256: "SHA-256",
  sha384: "SHA-384",
  sha512: "SHA-512",
  sm3_256: "SM3",
};

export function trusteeQuoteClaims(q: TdxQuote): Record<string, unknown> {
  const b = q.body;
  const body: Record<string, string> = {
    mr_config_id: hex(b.mrConfigId),
    mr_owner: hex(b.mrOwner),
    mr_owner_config: hex(b.mrOwnerConfig),
    mr_seam: hex(b.mrSeam),
    mr_td: hex(b.mrTd),
    mrsigner_seam: hex(b.mrSignerSeam),
    report_data: hex(b.reportData),
    rtmr_0: hex(b.rtmrs[0]),
    rtmr_1: hex(b.rtmrs[1]),
    rtmr_2: hex(b.rtmrs[2]),
    rtmr_3: hex(b.rtmrs[3]),
    seam_attributes: hex(b.seamAttributes),
    tcb_svn: hex(b.teeTcbSvn),
    td_attributes: hex(b.tdAttributes),
    xfam: hex(b.xfam),
  };
  // TD 1.5 extras; names not cross-checked against a trustee fixture.
  if (b.teeTcbSvn2) body.tee_tcb_svn2 = hex(b.teeTcbSvn2);
  if (b.mrServiceTd) body.mr_servicetd = hex(b.mrServiceTd);
  const a = decodeTdAttributes(b.tdAttributes);
  return {
    quote: {
      header: {
        att_key_type: le16(q.header.attKeyType),
        reserved: hex(q.header.reserved),
        tee_type: le32(q.header.teeType),
        user_data: hex(q.header.userData),
        vendor_id: hex(q.header.qeVendorId),
        version: le16(q.header.version),
      },
      body,
    },
    report_data: hex(b.reportData),
    init_data: hex(fitTo(b.mrConfigId, 48)),
    td_attributes: {
      debug: a.debug,
      key_locker: a.keyLocker,
      perfmon: a.perfmon,
      protection_keys: a.protectionKeys,
      septve_disable: a.septVeDisable,
    },
  };
}

/** The per-event part of trustee's `uefi_event_logs` claim (without the type-specific `details`). */
export function trusteeEventClaims(log: EventLog): Array<Record<string, unknown>> {
  return log.events.map((e) => {
    const digests = [...e.digests].map(([alg, d]) => ({
      alg: TRUSTEE_ALG_NAMES[algorithmName(alg)] ?? algorithmName(alg),
      digest: hex(d),
    }));
    const matches = [...e.digests].every(([alg, d]) => {
      const h = hashFunction(alg);
      return h !== undefined && hex(h(e.data)) === hex(d);
    });
    return { index: e.index, type_name: e.typeName, digests, event: b64(e.data), digest_matches_event: matches };
  });
}
