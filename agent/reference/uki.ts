// What a UKI boot puts into PCR 11 (systemd-stub, docs: systemd-stub(7), "TPM PCR Notes"): for each
// UKI section in systemd's fixed order, extend SHA-256(name + NUL) then SHA-256(section data as
// loaded, VirtualSize bytes); `.pcrsig` is never measured. Then systemd-pcrphase extends each boot
// phase string (no NUL): "enter-initrd" before cvm-unlock runs, later "leave-initrd", "sysinit",
// "ready", ... systemd-measure(1) computes the same ("calculate --phase").
import { sha256 } from "@noble/hashes/sha2.js";
import { concat, utf8 } from "../../platform/util/bytes.ts";
import { CvmError } from "../../platform/util/errors.ts";
import { parsePe, sectionData, type PeImage } from "./pe.ts";

/**
 * systemd's unified section order (src/fundamental/uki.h) with the stub version that started to
 * measure each: v252 (Debian 12, cross-checked with its systemd-measure) measures the first group;
 * .uname and .sbat joined in v254, .ucode in v256 (from systemd's NEWS; not cross-checked here).
 */
const SECTIONS: [string, number][] = [
  [".linux", 0],
  [".osrel", 0],
  [".cmdline", 0],
  [".initrd", 0],
  [".ucode", 256],
  [".splash", 0],
  [".dtb", 0],
  [".uname", 254],
  [".sbat", 254],
  [".pcrpkey", 0],
];

/** The stub's version from its ".sdmagic" section ("#### LoaderInfo: systemd-stub 252.39-1 ####"). */
export function stubVersion(img: PeImage): number | undefined {
  const s = img.sections.find((x) => x.name === ".sdmagic");
  if (!s) return undefined;
  const m = /systemd-stub (\d+)/.exec(new TextDecoder("latin1").decode(sectionData(img, s)));
  return m ? Number(m[1]) : undefined;
}

export function measuredSections(version: number): string[] {
  return SECTIONS.filter(([, since]) => version >= since).map(([n]) => n);
}

export const extend = (pcr: Uint8Array, digest: Uint8Array): Uint8Array => sha256(concat(pcr, digest));

/** The digests systemd-stub extends into PCR 11, in order. */
export function ukiPcr11Digests(img: PeImage, version: number): Uint8Array[] {
  const out: Uint8Array[] = [];
  for (const name of measuredSections(version)) {
    const s = img.sections.find((x) => x.name === name);
    if (!s) continue;
    out.push(sha256(utf8(`${name}\0`)), sha256(sectionData(img, s)));
  }
  return out;
}

/** PCR 11 from reset after the UKI's sections and the given pcrphase phases. */
export function ukiPcr11(uki: Uint8Array, phases: string[]): Uint8Array {
  const img = parsePe(uki);
  const version = stubVersion(img);
  if (version === undefined)
    throw new CvmError("usage", "the UKI has no systemd-stub .sdmagic section: which sections it measures is unknown");
  let pcr: Uint8Array = new Uint8Array(32);
  for (const d of ukiPcr11Digests(img, version)) pcr = extend(pcr, d);
  for (const p of phases) pcr = extend(pcr, sha256(utf8(p)));
  return pcr;
}
