// Compare replayed register values with values read from the hardware (TPM PCR_Read, a quote's
// RTMRs). A register the log never touched must still be all zeros.
import { bytesEqual } from "../util/bytes.ts";
import { algorithmName } from "./algorithms.ts";
import type { RegisterValues } from "./replay.ts";

export interface RegisterMismatch {
  index: number;
  alg: number;
  algName: string;
  replayed: Uint8Array;
  actual: Uint8Array;
}

/** Every (index, alg) in `actual` whose value the replay does not reproduce. */
export function compareRegisters(replayed: RegisterValues, actual: RegisterValues): RegisterMismatch[] {
  const out: RegisterMismatch[] = [];
  for (const [index, banks] of actual) {
    for (const [alg, value] of banks) {
      const r = replayed.get(index)?.get(alg) ?? new Uint8Array(value.length);
      if (!bytesEqual(r, value)) out.push({ index, alg, algName: algorithmName(alg), replayed: r, actual: value });
    }
  }
  return out.sort((a, b) => a.index - b.index || a.alg - b.alg);
}
