// Fuzz targets with planted bugs, for the harness's own tests: a harness that misses these would
// report robust parsers where there are none.
import { ParseError } from "../../../platform/util/errors.ts";
import { REFUSED, type FuzzTarget } from "../../fuzz/targets.ts";

const seeds = async () => [Uint8Array.from([1, 2, 3, 4, 5, 6, 7, 8])];

/** TypeError when byte 3 is 0xff; 30 ms when byte 0 is 0x80; refuses short inputs (typed) and byte 1 = 0. */
export const planted: FuzzTarget = {
  name: "planted",
  about: "planted crash and slow input",
  seeds,
  run: (b) => {
    if (b.length < 4) throw new ParseError("planted", "length", 0, "short");
    if (b[0] === 0x80) {
      const until = performance.now() + 30;
      while (performance.now() < until);
    }
    if (b[3] === 0xff) (undefined as unknown as { x: number }).x;
    return b[1] === 0 ? REFUSED : b;
  },
};

/** Never returns when byte 2 is 0xff. */
export const plantedHang: FuzzTarget = {
  name: "planted-hang",
  about: "planted infinite loop",
  seeds,
  run: (b) => {
    if (b[2] === 0xff) for (;;);
    return b;
  },
};

export const TARGETS = [planted, plantedHang];
