// NV codecs: TPM2_NV_ReadPublic, NV_Read, NV_DefineSpace, NV_Write, NV_UndefineSpace.
import { ByteWriter } from "../../util/reader.ts";
import { TPM_CC } from "../constants.ts";
import { buildCommand, parseResponse, readSized, type PasswordAuth } from "../marshal.ts";
import { encodeNvPublic, readNvPublic, type NvPublic } from "../structures.ts";

export function encodeNvReadPublic(index: number): Uint8Array {
  return buildCommand({ name: "NV_ReadPublic", code: TPM_CC.NV_ReadPublic, handles: [index] });
}

export function decodeNvReadPublic(rsp: Uint8Array): { nvPublic: NvPublic; name: Uint8Array } {
  const { params: r } = parseResponse(rsp, { name: "NV_ReadPublic", sessions: false });
  const body = readSized(r, "nvPublic", 128);
  const nvPublic = readNvPublic(body);
  body.end("nvPublic");
  const name = r.sized16be("nvName", 2 + 64);
  r.end("parameters");
  return { nvPublic, name };
}

/** One NV_Read chunk; `authHandle` is the index itself (AUTHREAD) or TPM_RH_OWNER (OWNERREAD). */
export function encodeNvRead(
  authHandle: number,
  index: number,
  size: number,
  offset: number,
  auth: PasswordAuth = {},
): Uint8Array {
  return buildCommand({
    name: "NV_Read",
    code: TPM_CC.NV_Read,
    handles: [authHandle, index],
    auths: [auth],
    params: new ByteWriter().u16be(size).u16be(offset).finish(),
  });
}

export function decodeNvRead(rsp: Uint8Array, requested: number): Uint8Array {
  const { params: r } = parseResponse(rsp, { name: "NV_Read", sessions: true });
  const at = r.offset;
  const data = r.sized16be("data", 0xffff);
  if (data.length !== requested) r.fail("data", `asked for ${requested} bytes, TPM returned ${data.length}`, at);
  r.end("parameters");
  return data.slice();
}

export function encodeNvDefineSpace(
  authHandle: number,
  pub: NvPublic,
  indexAuth: Uint8Array = new Uint8Array(0),
  auth: PasswordAuth = {},
): Uint8Array {
  return buildCommand({
    name: "NV_DefineSpace",
    code: TPM_CC.NV_DefineSpace,
    handles: [authHandle],
    auths: [auth],
    params: new ByteWriter().sized16be(indexAuth).sized16be(encodeNvPublic(pub)).finish(),
  });
}

export function encodeNvWrite(
  authHandle: number,
  index: number,
  data: Uint8Array,
  offset: number,
  auth: PasswordAuth = {},
): Uint8Array {
  return buildCommand({
    name: "NV_Write",
    code: TPM_CC.NV_Write,
    handles: [authHandle, index],
    auths: [auth],
    params: new ByteWriter().sized16be(data).u16be(offset).finish(),
  });
}

export function encodeNvUndefineSpace(authHandle: number, index: number, auth: PasswordAuth = {}): Uint8Array {
  return buildCommand({
    name: "NV_UndefineSpace",
    code: TPM_CC.NV_UndefineSpace,
    handles: [authHandle, index],
    auths: [auth],
  });
}

/** NV_DefineSpace, NV_Write and NV_UndefineSpace return no parameters. */
export function decodeNoParams(name: string, rsp: Uint8Array): void {
  parseResponse(rsp, { name, sessions: true }).params.end("parameters");
}
