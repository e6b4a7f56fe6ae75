// Loading the real Azure vectors in test/fixtures/azure (see PROVENANCE.md there).
import * as fs from "node:fs";

const DIR = new URL("../../fixtures/azure/", import.meta.url);

export function fixture(name: string): Uint8Array {
  return new Uint8Array(fs.readFileSync(new URL(name, DIR)));
}
export function fixtureText(name: string): string {
  return fs.readFileSync(new URL(name, DIR), "utf8");
}

/** kinvolk's bincode Quote: u64 LE len ‖ signature ‖ u64 LE len ‖ message ‖ u64 LE count ‖ count × 32-byte PCRs. */
export function decodeKinvolkQuote(b: Uint8Array): { signature: Uint8Array; message: Uint8Array; pcrs: Uint8Array[] } {
  const v = Buffer.from(b.buffer, b.byteOffset, b.byteLength);
  let o = 0;
  const len = () => {
    const n = Number(v.readBigUInt64LE(o));
    o += 8;
    return n;
  };
  const take = (n: number) => b.slice(o, (o += n));
  const signature = take(len());
  const message = take(len());
  const count = len();
  const pcrs = Array.from({ length: count }, () => take(32));
  if (o !== b.length) throw new Error(`quote.bin: ${b.length - o} trailing bytes`);
  return { signature, message, pcrs };
}

export const VECTORS = {
  trusteeSnp: { hcl: "trustee-az-snp-vtpm/hcl-report.bin", quote: "trustee-az-snp-vtpm/quote.bin" },
  trusteeTdx: { hcl: "trustee-az-tdx-vtpm/hcl-report.bin", quote: "trustee-az-tdx-vtpm/quote.bin" },
} as const;
