// Object commands: TPM2_CreatePrimary, TPM2_ReadPublic, TPM2_FlushContext, TPM2_EvictControl.
import { ByteWriter } from "../../util/reader.ts";
import { ParseError } from "../../util/errors.ts";
import { TPM_CC, TPM_ST } from "../constants.ts";
import { buildCommand, parseResponse, readSized, type PasswordAuth } from "../marshal.ts";
import { readPublic, type TpmPublic } from "../structures.ts";

const TPM_HT_TRANSIENT = 0x80;

export interface CreatePrimaryResponse {
  handle: number;
  publicArea: TpmPublic;
  /** The TPMT_PUBLIC bytes as the TPM returned them (name = nameAlg ‖ H(these bytes)). */
  publicBytes: Uint8Array;
  name: Uint8Array;
}

export function encodeCreatePrimary(hierarchy: number, template: Uint8Array, auth: PasswordAuth = {}): Uint8Array {
  const params = new ByteWriter()
    .sized16be(new ByteWriter().sized16be(new Uint8Array(0)).sized16be(new Uint8Array(0)).finish()) // TPM2B_SENSITIVE_CREATE: empty userAuth + data
    .sized16be(template) // TPM2B_PUBLIC
    .sized16be(new Uint8Array(0)) // outsideInfo
    .u32be(0) // creationPCR: none
    .finish();
  return buildCommand({
    name: "CreatePrimary",
    code: TPM_CC.CreatePrimary,
    handles: [hierarchy],
    auths: [auth],
    params,
  });
}

export function decodeCreatePrimary(rsp: Uint8Array): CreatePrimaryResponse {
  const { handles, params: r } = parseResponse(rsp, { name: "CreatePrimary", handles: 1, sessions: true });
  const pub = readSized(r, "outPublic", 1024);
  const publicArea = readPublic(pub);
  pub.end("outPublic");
  r.sized16be("creationData", 2048);
  r.sized16be("creationHash", 64);
  const tagAt = r.offset;
  const tag = r.u16be("creationTicket.tag");
  if (tag !== TPM_ST.CREATION) r.fail("creationTicket.tag", `0x${tag.toString(16)} is not TPM_ST_CREATION`, tagAt);
  r.u32be("creationTicket.hierarchy");
  r.sized16be("creationTicket.digest", 64);
  const name = r.sized16be("name", 2 + 64);
  r.end("parameters");
  const handle = handles[0]!;
  // A primary key is a transient object; anything else would be flushed/used as the wrong entity.
  if (handle >>> 24 !== TPM_HT_TRANSIENT)
    throw new ParseError(
      "TPM2_CreatePrimary response",
      "objectHandle",
      10,
      `0x${handle.toString(16)} is not a transient handle (0x80xxxxxx)`,
    );
  return { handle, publicArea, publicBytes: pub.buf.slice(), name };
}

export interface ReadPublicResponse {
  publicArea: TpmPublic;
  publicBytes: Uint8Array;
  name: Uint8Array;
  qualifiedName: Uint8Array;
}

export function encodeReadPublic(handle: number): Uint8Array {
  return buildCommand({ name: "ReadPublic", code: TPM_CC.ReadPublic, handles: [handle] });
}

export function decodeReadPublic(rsp: Uint8Array): ReadPublicResponse {
  const { params: r } = parseResponse(rsp, { name: "ReadPublic", sessions: false });
  const pub = readSized(r, "outPublic", 1024);
  const publicArea = readPublic(pub);
  pub.end("outPublic");
  const name = r.sized16be("name", 2 + 64);
  const qualifiedName = r.sized16be("qualifiedName", 2 + 64);
  r.end("parameters");
  return { publicArea, publicBytes: pub.buf.slice(), name, qualifiedName };
}

export function encodeFlushContext(handle: number): Uint8Array {
  // The handle is a parameter here, not a handle-area entry (errors come back as parameter errors).
  return buildCommand({
    name: "FlushContext",
    code: TPM_CC.FlushContext,
    params: new ByteWriter().u32be(handle).finish(),
  });
}

export function decodeFlushContext(rsp: Uint8Array): void {
  parseResponse(rsp, { name: "FlushContext", sessions: false }).params.end("parameters");
}

/** Make a transient object persistent at `persistentHandle` (or evict a persistent one: pass it as both). */
export function encodeEvictControl(
  auth: number,
  objectHandle: number,
  persistentHandle: number,
  pw: PasswordAuth = {},
): Uint8Array {
  return buildCommand({
    name: "EvictControl",
    code: TPM_CC.EvictControl,
    handles: [auth, objectHandle],
    auths: [pw],
    params: new ByteWriter().u32be(persistentHandle).finish(),
  });
}

export function decodeEvictControl(rsp: Uint8Array): void {
  parseResponse(rsp, { name: "EvictControl", sessions: true }).params.end("parameters");
}
