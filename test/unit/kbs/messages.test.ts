import { describe, expect, it } from "vitest";
import { fetchResource, parseChallenge, parseToken, sessionCookie } from "../../../agent/kbs/client.ts";
import { Timeline } from "../../../agent/timeline.ts";
import { Deadline } from "../../../platform/util/deadline.ts";
import { CvmError } from "../../../platform/util/errors.ts";
import { silentLogger } from "../../../platform/util/log.ts";
import { startTestKbs } from "../../kbs/server.ts";

const b = (s: string) => Buffer.from(s);
const EP = "https://kbs";

describe("hostile KBS answers are refused as kbs-protocol", () => {
  it("challenge", () => {
    expect(parseChallenge(b('{"nonce":"abc=","extra-params":""}'), EP)).toEqual({ nonce: "abc=", extraParams: "" });
    for (const body of [
      "",
      "nul",
      "[]",
      '{"extra-params":""}',
      '{"nonce":5}',
      '{"nonce":""}',
      `{"nonce":"${"A".repeat(1025)}"}`,
      "\xff",
    ]) {
      const e = (() => {
        try {
          parseChallenge(Buffer.from(body, "latin1"), EP);
        } catch (err) {
          return err;
        }
      })();
      expect(e, body.slice(0, 20)).toBeInstanceOf(CvmError);
      expect((e as CvmError).kind).toBe("kbs-protocol");
    }
  });

  it("session cookie: only name=value, attributes ignored, other cookies skipped, bad values refused", () => {
    const id = "0123456789abcdef0123456789abcdef";
    expect(sessionCookie(`kbs-session-id=${id}; Expires=Fri, 21 Aug 2026 02:00:00 GMT`, EP)).toBe(
      `kbs-session-id=${id}`,
    );
    expect(sessionCookie(["lb=1; Path=/", `kbs-session-id=${id}`], EP)).toBe(`kbs-session-id=${id}`);
    expect(sessionCookie(`kbs-session-id="${id}"`, EP)).toBe(`kbs-session-id=${id}`);
    for (const bad of [
      undefined,
      [],
      "other=1",
      "kbs-session-id=",
      `kbs-session-id=${"a".repeat(257)}`,
      "kbs-session-id=a b",
      "kbs-session-id=a\\b",
      "kbs-session-idx=1",
    ])
      expect(() => sessionCookie(bad as never, EP), String(bad)).toThrow(/kbs-session-id/);
  });

  it("token must be a bounded JWT-shaped string (it goes into a header)", () => {
    expect(parseToken(b('{"token":"eyJ.eyJ.sig-_"}'), EP)).toBe("eyJ.eyJ.sig-_");
    for (const body of [
      '{"token":""}',
      '{"token":1}',
      "{}",
      '{"token":"a\\r\\nX-Evil: 1"}',
      `{"token":"${"a".repeat(65537)}"}`,
      '"eyJ"',
    ])
      expect(() => parseToken(b(body), EP), body.slice(0, 30)).toThrow(CvmError);
  });

  it("evidence too big for trustee's 2 MiB payload limit is refused before sending", async () => {
    const k = await startTestKbs();
    try {
      const e = await fetchResource(
        {
          endpoints: [k.url],
          insecureHttp: true,
          requestTimeoutMs: 5000,
          attemptsPerEndpoint: 1,
          resourceAttempts: 1,
          teeKey: "ec-p256",
          deadline: new Deadline(10_000),
          log: silentLogger,
          timeline: new Timeline(),
        },
        { tee: "sample", collect: async () => ({ blob: "A".repeat(2 * 1024 * 1024) }) },
        "a/b/c",
      ).catch((err: unknown) => err);
      expect(e).toBeInstanceOf(CvmError);
      expect((e as CvmError).kind).toBe("evidence");
      expect((e as CvmError).message).toMatch(/payload limit/);
      expect(k.stats.requests.attest).toBe(0);
    } finally {
      await k.close();
    }
  });
});
