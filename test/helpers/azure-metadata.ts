// A fake Azure instance metadata service on loopback: THIM VCEK and /acc/tdquote, as the
// real IMDS answers them (docs/spec/azure-hcl.md §3), plus injectable misbehaviour for hostile-input
// tests. Like IMDS it refuses requests without the `Metadata: true` header.
import * as http from "node:http";
import type { AddressInfo } from "node:net";

export type MetadataFault =
  | "none"
  | "garbage" // 200 with a non-JSON body
  | "wrong-shape" // 200 JSON without the expected fields
  | "oversized" // 200 with a multi-MiB body
  | "slow" // accept the request, never answer
  | "status-500" // always 500
  | "flaky-500" // one 500, then normal
  | "quote-not-base64" // /acc/tdquote answers a quote string with a character outside base64url
  | "quote-only-padding"; // /acc/tdquote answers "==" (padding, no bytes)

export interface FakeMetadataOptions {
  /** PEM of the VCEK (THIM vcekCert). */
  vcekPem?: string;
  /** PEM of ASK+ARK (THIM certificateChain). */
  chainPem?: string;
  /** Builds the TD quote for a posted TDREPORT. */
  tdQuote?: (tdReport: Uint8Array) => Uint8Array;
  fault?: MetadataFault;
}

export interface FakeMetadata {
  url: string;
  requests: { method: string; path: string; metadataHeader: string | undefined; body: string }[];
  setFault(f: MetadataFault): void;
  close(): Promise<void>;
}

export async function startFakeMetadata(o: FakeMetadataOptions): Promise<FakeMetadata> {
  let fault: MetadataFault = o.fault ?? "none";
  let flakyServed = false;
  const requests: FakeMetadata["requests"] = [];
  const hanging = new Set<http.ServerResponse>();
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (d: Buffer) => chunks.push(d));
    req.on("end", () => {
      const body = Buffer.concat(chunks).toString("utf8");
      const path = req.url ?? "";
      requests.push({
        method: req.method ?? "",
        path,
        metadataHeader: req.headers["metadata"] as string | undefined,
        body,
      });
      const send = (status: number, text: string, type = "application/json") => {
        res.writeHead(status, { "Content-Type": type, "Content-Length": Buffer.byteLength(text) });
        res.end(text);
      };
      if (req.headers["metadata"] !== "true")
        return send(400, JSON.stringify({ error: "Bad request. Required metadata header not specified" }));
      if (fault === "slow") return void hanging.add(res);
      if (fault === "status-500" || (fault === "flaky-500" && !flakyServed)) {
        flakyServed = true;
        return send(500, "{}");
      }
      if (fault === "garbage") return send(200, "<html>not json</html>", "text/html");
      if (fault === "wrong-shape") return send(200, JSON.stringify({ something: "else" }));
      if (fault === "oversized")
        return send(200, JSON.stringify({ vcekCert: "A".repeat(4 * 1024 * 1024), quote: "A" }));
      if (req.method === "GET" && path === "/metadata/THIM/amd/certification") {
        if (!o.vcekPem) return send(404, "{}");
        return send(
          200,
          JSON.stringify({ vcekCert: o.vcekPem, tcbm: "DB18000000000004", certificateChain: o.chainPem ?? o.vcekPem }),
        );
      }
      if (req.method === "POST" && path === "/acc/tdquote") {
        if (fault === "quote-not-base64") return send(200, JSON.stringify({ quote: "AAAA*AAA" }));
        if (fault === "quote-only-padding") return send(200, JSON.stringify({ quote: "==" }));
        if (!o.tdQuote) return send(404, "{}");
        let report: Uint8Array;
        try {
          const j = JSON.parse(body) as { report?: unknown };
          if (typeof j.report !== "string" || !/^[A-Za-z0-9_-]+=*$/.test(j.report)) throw new Error("report");
          report = new Uint8Array(Buffer.from(j.report, "base64url"));
        } catch {
          return send(400, JSON.stringify({ error: "bad report" }));
        }
        if (report.length !== 1024)
          return send(400, JSON.stringify({ error: `TDREPORT must be 1024 bytes, got ${report.length}` }));
        return send(200, JSON.stringify({ quote: Buffer.from(o.tdQuote(report)).toString("base64url") }));
      }
      send(404, "{}");
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const port = (server.address() as AddressInfo).port;
  return {
    url: `http://127.0.0.1:${port}`,
    requests,
    setFault(f) {
      fault = f;
      flakyServed = false;
    },
    async close() {
      for (const r of hanging) r.destroy();
      server.closeAllConnections?.();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
