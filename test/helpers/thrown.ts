// The error a synchronous call throws, checked to be an instance of the expected class, so a test
// can go on to assert its kind, fields and message.
import { expect } from "vitest";

export function thrownBy<E extends Error>(f: () => unknown, type: abstract new (...args: never[]) => E): E {
  try {
    f();
  } catch (e) {
    expect(e).toBeInstanceOf(type);
    return e as E;
  }
  throw new Error(`expected a ${type.name} to be thrown`);
}
