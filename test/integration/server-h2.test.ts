// The gRPC server (src/rpc/server.ts, gRPC over HTTP/2 on node:http2) at the protocol edges the
// typed clients never reach: a raw node:http2 client sends wrong methods, content types,
// encodings, compressed or truncated frames, two messages to a unary method and an oversized
// length prefix; grpc-js and raw clients check deadlines (the handler's signal aborts, the audit
// says DEADLINE_EXCEEDED), client-stream flow control, a graceful close() and an IPv6 listener.
// Every other RPC test (client-h2, auth, rpc-decode, rpc-fuzz, load, the e2e tests) runs through
// this server too.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import http2 from "node:http2";
import * as grpc from "@grpc/grpc-js";
import { generateToken } from "../../src/auth/local.ts";
import { McpAgent } from "../../src/gen/mcp/v1/mcp_pb.ts";
import { type RunningServer, type ServerOptions, startServer } from "../../src/rpc/server.ts";
import { methodWires } from "../../src/rpc/service.ts";
import { MAX_MESSAGE_BYTES } from "../../src/rpc/wire.ts";
import { testPki } from "../support/pki.ts";
import { rawCall, rawChannel, rawMethods } from "../support/raw-grpc.ts";
import { scriptedServerOptions } from "../support/scripted-server.ts";

const token = generateToken();
const lines: Record<string, unknown>[] = [];
let pki: { certPem: string; keyPem: string; caPem: string };
let server: RunningServer;
let session: http2.ClientHttp2Session;

// What the handlers saw, per test.
let aborted = false;
let received: number[] = [];
let slowMs = 0;

const wires = methodWires(McpAgent);
const LIST = wires.get("listServices")!;
const IMPORT = wires.get("importServiceData")!;

function options(address: string): ServerOptions {
  return scriptedServerOptions(address, pki, token, lines, {
    listServices: async () => {
      if (slowMs > 0) await Bun.sleep(slowMs);
      return { services: [] };
    },
    // Waits until the caller goes away or the deadline passes.
    nodeStatus: async (_req: unknown, ctx: { signal: AbortSignal }) => {
      await new Promise<void>((resolve) => ctx.signal.addEventListener("abort", () => resolve()));
      aborted = ctx.signal.aborted;
      return {};
    },
    importServiceData: async (reqs: AsyncIterable<{ data: Uint8Array }>) => {
      let bytes = 0;
      for await (const r of reqs) {
        received.push(r.data[0] ?? -1);
        bytes += r.data.length;
        await Bun.sleep(1); // slower than the client: flow control must hold it
      }
      return { bytesWritten: BigInt(bytes) };
    },
  });
}

beforeAll(async () => {
  pki = await testPki("server-h2", { caDays: 1, ipAddresses: ["127.0.0.1", "::1"] });
  server = await startServer(options("127.0.0.1:0"));
  session = http2.connect(`https://127.0.0.1:${server.port}`, { ca: pki.caPem, rejectUnauthorized: false });
  session.on("error", () => {});
}, 30_000);

afterAll(async () => {
  session?.close();
  await server?.close();
});

function prefix(len: number, flag = 0): Buffer {
  const b = Buffer.alloc(5);
  b[0] = flag;
  b.writeUInt32BE(len, 1);
  return b;
}
const framed = (msg: Buffer, flag = 0) => Buffer.concat([prefix(msg.length, flag), msg]);

interface RawAnswer {
  status: number;
  grpcStatus: number | null;
  grpcMessage: string;
  data: Buffer;
}

/** One raw request; `body` chunks are written in order, then the stream is ended unless `keepOpen`. */
function raw(
  headers: Record<string, string>,
  body: Buffer[],
  opts: { keepOpen?: boolean; s?: http2.ClientHttp2Session } = {},
): Promise<RawAnswer> {
  return new Promise((resolve) => {
    const req = (opts.s ?? session).request({
      ":method": "POST",
      ":path": LIST.path,
      "content-type": "application/grpc",
      te: "trailers",
      authorization: `Bearer ${token}`,
      ...headers,
    });
    let status = 0;
    let gs: string | undefined;
    let gm = "";
    const data: Buffer[] = [];
    const take = (h: http2.IncomingHttpHeaders) => {
      if (h["grpc-status"] !== undefined) gs = String(h["grpc-status"]);
      if (h["grpc-message"] !== undefined) gm = decodeURIComponent(String(h["grpc-message"]));
    };
    req.on("response", (h) => {
      status = Number(h[":status"]);
      take(h);
      // An early answer to a request still being sent: the status is all there is to wait for.
      if (opts.keepOpen && gs !== undefined) req.close();
    });
    req.on("trailers", take);
    req.on("data", (d: Buffer) => data.push(d));
    req.on("error", () => {});
    req.on("close", () =>
      resolve({
        status,
        grpcStatus: gs === undefined ? null : Number(gs),
        grpcMessage: gm,
        data: Buffer.concat(data),
      }),
    );
    for (const b of body) req.write(b);
    if (!opts.keepOpen) req.end();
  });
}

const EMPTY_LIST = framed(Buffer.from(LIST.serializeRequest({})));

describe("protocol edges (raw HTTP/2)", () => {
  test("a well-formed unary call: 200, one framed answer, grpc-status 0 in the trailers", async () => {
    const r = await raw({}, [EMPTY_LIST]);
    expect(r.status).toBe(200);
    expect(r.grpcStatus).toBe(0);
    expect(r.data.subarray(0, 5)).toEqual(prefix(r.data.length - 5));
  });

  test("not POST → 405; not application/grpc → 415", async () => {
    expect((await raw({ ":method": "PUT" }, [])).status).toBe(405);
    expect((await raw({ "content-type": "application/json" }, [EMPTY_LIST])).status).toBe(415);
  });

  test("a path no service has → UNIMPLEMENTED naming it", async () => {
    const r = await raw({ ":path": "/mcp.v1.Nope/Nothing" }, [EMPTY_LIST]);
    expect(r.grpcStatus).toBe(grpc.status.UNIMPLEMENTED);
    expect(r.grpcMessage).toBe("The server does not implement the method /mcp.v1.Nope/Nothing");
  });

  test("grpc-encoding other than identity, or a compressed frame → UNIMPLEMENTED", async () => {
    const enc = await raw({ "grpc-encoding": "gzip" }, [EMPTY_LIST]);
    expect(enc.grpcStatus).toBe(grpc.status.UNIMPLEMENTED);
    expect(enc.grpcMessage).toContain("grpc-encoding gzip is not supported");
    const flagged = await raw({}, [framed(Buffer.alloc(0), 1)]);
    expect(flagged.grpcStatus).toBe(grpc.status.UNIMPLEMENTED);
    expect(flagged.grpcMessage).toContain("compressed messages are not supported");
  });

  test("a body ending inside a frame, two messages or none for a unary method → INVALID_ARGUMENT", async () => {
    const truncated = await raw({}, [prefix(10), Buffer.from([1, 2, 3])]);
    expect(truncated.grpcStatus).toBe(grpc.status.INVALID_ARGUMENT);
    expect(truncated.grpcMessage).toContain("ended inside a message");
    const two = await raw({}, [EMPTY_LIST, EMPTY_LIST]);
    expect(two.grpcStatus).toBe(grpc.status.INVALID_ARGUMENT);
    expect(two.grpcMessage).toContain("more than one request message");
    const none = await raw({}, []);
    expect(none.grpcStatus).toBe(grpc.status.INVALID_ARGUMENT);
    expect(none.grpcMessage).toBe("no request message");
  });

  test("a length prefix over 16 MiB is refused at once, before any of the message arrives", async () => {
    const t0 = performance.now();
    const r = await raw({}, [prefix(MAX_MESSAGE_BYTES + 1)], { keepOpen: true });
    expect(r.grpcStatus).toBe(grpc.status.RESOURCE_EXHAUSTED);
    expect(r.grpcMessage).toBe(
      `received message larger than max (${MAX_MESSAGE_BYTES + 1} vs. ${MAX_MESSAGE_BYTES})`,
    );
    expect(performance.now() - t0).toBeLessThan(5000); // answered, not waiting for a body that never comes
    // The session is still good for the next call.
    expect((await raw({}, [EMPTY_LIST])).grpcStatus).toBe(0);
  });

  test("no token on a malformed body → UNAUTHENTICATED (auth comes before decoding)", async () => {
    const r = await raw({ authorization: "" }, [framed(Buffer.from([0x12, 100, 0x41]))]);
    expect(r.grpcStatus).toBe(grpc.status.UNAUTHENTICATED);
  });
});

describe("calls over grpc-js", () => {
  test("deadline: DEADLINE_EXCEEDED to the caller, the handler's signal aborts, the audit says so", async () => {
    aborted = false;
    lines.length = 0;
    const ch = rawChannel(`127.0.0.1:${server.port}`, pki.caPem);
    const m = rawMethods(McpAgent).find((x) => x.name === "NodeStatus")!;
    const r = await rawCall(ch, m, token, [Buffer.alloc(0)], 300);
    ch.close();
    expect(r.code).toBe(grpc.status.DEADLINE_EXCEEDED);
    for (let i = 0; i < 50 && !aborted; i++) await Bun.sleep(20);
    expect(aborted).toBe(true);
    const a = lines.find((l) => l["method"] === "/mcp.v1.McpAgent/NodeStatus");
    expect(a).toMatchObject({ audit: true, caller: "bob", status: "DEADLINE_EXCEEDED" });
  });

  test("a client stream faster than its handler arrives whole and in order (flow control holds it)", async () => {
    received = [];
    const ch = rawChannel(`127.0.0.1:${server.port}`, pki.caPem);
    const m = rawMethods(McpAgent).find((x) => x.name === "ImportServiceData")!;
    const msgs = Array.from({ length: 300 }, (_, i) =>
      Buffer.from(IMPORT.serializeRequest({ serviceName: "s", data: Buffer.alloc(32 * 1024, i % 256) })),
    );
    const r = await rawCall(ch, m, token, msgs, 60_000);
    ch.close();
    expect(r.code).toBe(grpc.status.OK);
    expect(received).toEqual(Array.from({ length: 300 }, (_, i) => i % 256));
  }, 60_000);
});

describe("listeners", () => {
  test("close() lets a call in flight finish, then stops listening", async () => {
    const s = await startServer(options("127.0.0.1:0"));
    slowMs = 400;
    try {
      const c = http2.connect(`https://127.0.0.1:${s.port}`, { ca: pki.caPem, rejectUnauthorized: false });
      c.on("error", () => {});
      const inFlight = raw({}, [EMPTY_LIST], { s: c });
      await Bun.sleep(100);
      const t0 = performance.now();
      await s.close();
      expect((await inFlight).grpcStatus).toBe(0);
      expect(performance.now() - t0).toBeGreaterThan(200);
      c.close();
      const refused = await new Promise<string>((resolve) => {
        const c2 = http2.connect(`https://127.0.0.1:${s.port}`, { rejectUnauthorized: false });
        c2.on("error", (e: NodeJS.ErrnoException) => resolve(e.code ?? e.message));
        c2.on("connect", () => resolve("connected"));
      });
      expect(refused).toBe("ECONNREFUSED");
    } finally {
      slowMs = 0;
      await s.close();
    }
  });

  test("an IPv6 listener serves, and the audit names the peer as [addr]:port", async () => {
    const s = await startServer(options("[::1]:0"));
    try {
      lines.length = 0;
      const c = http2.connect(`https://[::1]:${s.port}`, { ca: pki.caPem, rejectUnauthorized: false });
      c.on("error", () => {});
      expect((await raw({}, [EMPTY_LIST], { s: c })).grpcStatus).toBe(0);
      c.close();
      const a = lines.find((l) => l["method"] === "/mcp.v1.McpAgent/ListServices");
      expect(String(a?.["peer"])).toMatch(/^\[::1\]:\d+$/);
    } finally {
      await s.close();
    }
  });
});
