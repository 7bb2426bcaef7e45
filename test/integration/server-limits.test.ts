// HTTP/2 limits of the gRPC server (src/rpc/server.ts, ServerLimits) probed on 127.0.0.1 over real
// TLS: what a client that does not play by the rules gets. A raw frame client
// (test/support/raw-h2.ts) opens streams past the advertised limit, floods HEADERS + RST_STREAM
// pairs and sends oversized header lists; the runtime's own http2 client checks what a
// well-behaved client sees. Each probe also checks that the server keeps serving others.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import http2 from "node:http2";
import net from "node:net";
import tls from "node:tls";
import { generateToken } from "../../src/auth/local.ts";
import { McpAgent } from "../../src/gen/mcp/v1/mcp_pb.ts";
import {
  DEFAULT_SERVER_LIMITS,
  type RunningServer,
  type ServerLimits,
  serverLimits,
  startServer,
} from "../../src/rpc/server.ts";
import { methodWires } from "../../src/rpc/service.ts";
import { Code } from "../../src/rpc/wire.ts";
import { testPki } from "../support/pki.ts";
import {
  connectRawH2,
  dataFrame,
  ERR,
  grpcRequestHeaders,
  headersFrames,
  rstStream,
  SETTINGS_MAX_CONCURRENT_STREAMS,
  SETTINGS_MAX_HEADER_LIST_SIZE,
} from "../support/raw-h2.ts";
import { scriptedServerOptions } from "../support/scripted-server.ts";

const token = generateToken();
let pki: { certPem: string; keyPem: string; caPem: string };
let server: RunningServer;
const lines: Record<string, unknown>[] = [];

// What the handler saw.
let calls = 0;
let active = 0;
let maxActive = 0;
let handlerMs = 0;

const LIST = methodWires(McpAgent).get("listServices")!;
const EMPTY = Buffer.alloc(5); // one empty length-prefixed message: a valid ListServicesRequest
const AUTH: [string, string][] = [["authorization", `Bearer ${token}`]];
/** Limits of the shared server: the defaults, with timeouts short enough to watch. */
const TEST_LIMITS: Partial<ServerLimits> = { idleTimeoutMs: 1000, handshakeTimeoutMs: 500 };

async function start(limits: Partial<ServerLimits>, log: Record<string, unknown>[]): Promise<RunningServer> {
  return startServer(
    scriptedServerOptions(
      "127.0.0.1:0",
      pki,
      token,
      log,
      {
        listServices: async () => {
          calls++;
          maxActive = Math.max(maxActive, ++active);
          try {
            if (handlerMs > 0) await Bun.sleep(handlerMs);
          } finally {
            active--;
          }
          return { services: [] };
        },
      },
      { limits },
    ),
  );
}

function resetCounters(ms = 0): void {
  calls = 0;
  active = 0;
  maxActive = 0;
  handlerMs = ms;
}

beforeAll(async () => {
  pki = await testPki("server-limits", { caDays: 1 });
  server = await start(TEST_LIMITS, lines);
}, 30_000);

afterAll(async () => {
  await server?.close();
});

function connect(port = server.port): http2.ClientHttp2Session {
  const s = http2.connect(`https://127.0.0.1:${port}`, { ca: pki.caPem, rejectUnauthorized: false });
  s.on("error", () => {});
  return s;
}

/** One unary ListServices call; resolves with grpc-status (or the client error code). */
function call(
  s: http2.ClientHttp2Session,
  headers: Record<string, string> = {},
  body: Buffer = EMPTY,
): Promise<string> {
  return new Promise((resolve) => {
    let gs = "none";
    const r = s.request({
      ":method": "POST",
      ":path": LIST.path,
      "content-type": "application/grpc",
      te: "trailers",
      authorization: `Bearer ${token}`,
      ...headers,
    });
    const take = (h: http2.IncomingHttpHeaders) => {
      if (h["grpc-status"] !== undefined) gs = String(h["grpc-status"]);
    };
    r.on("response", take);
    r.on("trailers", take);
    r.on("error", (e: NodeJS.ErrnoException) => {
      gs = e.code ?? e.message;
    });
    r.on("close", () => resolve(gs));
    r.resume();
    r.end(body);
  });
}

const closedWithin = (p: Promise<unknown>, ms: number) =>
  Promise.race([p.then(() => true), Bun.sleep(ms).then(() => false)]);

describe("limits are checked", () => {
  test("defaults, and a limit that is not a positive integer is refused with its name", () => {
    expect(DEFAULT_SERVER_LIMITS).toMatchObject({
      maxConcurrentStreams: 100,
      maxHeaderListBytes: 16 * 1024,
      idleTimeoutMs: 300_000,
      resetBurst: 200,
      resetWindowMs: 10_000,
    });
    expect(() => serverLimits({ idleTimeoutMs: 0 })).toThrow(
      "server limit idleTimeoutMs must be a positive integer",
    );
    expect(() => serverLimits({ maxConcurrentStreams: 1.5 })).toThrow("maxConcurrentStreams");
    expect(() => serverLimits({ idleTimeoutMs: 2 ** 31 })).toThrow("idleTimeoutMs must be at most");
  });
});

describe("TLS and authentication come first", () => {
  test("a TLS 1.2 client is refused", async () => {
    const outcome = await new Promise<string>((resolve) => {
      const s = tls.connect({
        host: "127.0.0.1",
        port: server.port,
        maxVersion: "TLSv1.2",
        minVersion: "TLSv1.2",
        ALPNProtocols: ["h2"],
        rejectUnauthorized: false,
      });
      s.on("secureConnect", () => {
        resolve(`connected with ${s.getProtocol()}`);
        s.destroy();
      });
      s.on("error", (e: NodeJS.ErrnoException) => resolve(`error ${e.code ?? e.message}`));
      s.on("close", () => resolve("closed"));
    });
    expect(outcome).not.toContain("connected");
  });

  test("no token and an undecodable body → UNAUTHENTICATED; the body is never parsed", async () => {
    resetCounters();
    const s = connect();
    // A field tag claiming 100 bytes of a 1-byte payload: INVALID_ARGUMENT had it been decoded.
    const bad = Buffer.from([0, 0, 0, 0, 3, 0x12, 100, 0x41]);
    expect(await call(s, { authorization: "" }, bad)).toBe(String(Code.UNAUTHENTICATED));
    expect(await call(s, {}, bad)).toBe(String(Code.INVALID_ARGUMENT)); // the same body with a token
    expect(calls).toBe(0);
    s.close();
  });
});

describe("concurrent streams per connection", () => {
  test("3,000 streams from a client: it sees the advertised limit and at most that many handlers run", async () => {
    resetCounters(20);
    const s = connect();
    await new Promise((r) => s.once("remoteSettings", r));
    expect(s.remoteSettings.maxConcurrentStreams).toBe(DEFAULT_SERVER_LIMITS.maxConcurrentStreams);
    const codes = await Promise.all(Array.from({ length: 3000 }, () => call(s)));
    s.close();
    expect(codes.filter((c) => c !== "0")).toEqual([]);
    expect(calls).toBe(3000);
    expect(maxActive).toBeLessThanOrEqual(DEFAULT_SERVER_LIMITS.maxConcurrentStreams);
  }, 30_000);

  test("3,000 streams opened at once past the limit: the excess is refused, never run", async () => {
    resetCounters(200);
    const c = await connectRawH2(server.port);
    const out: Buffer[] = [];
    for (let i = 0; i < 3000; i++) {
      const id = 1 + 2 * i;
      out.push(headersFrames(id, grpcRequestHeaders(LIST.path, AUTH), false), dataFrame(id, EMPTY, true));
    }
    c.write(Buffer.concat(out));
    await closedWithin(c.closed, 3000);
    expect(c.settings.get(SETTINGS_MAX_CONCURRENT_STREAMS)).toBe(DEFAULT_SERVER_LIMITS.maxConcurrentStreams);
    expect(maxActive).toBeLessThanOrEqual(DEFAULT_SERVER_LIMITS.maxConcurrentStreams);
    expect(calls).toBeLessThanOrEqual(DEFAULT_SERVER_LIMITS.maxConcurrentStreams);
    // Refused stream by stream, or the connection ended with ENHANCE_YOUR_CALM.
    const refused = [...c.resets.values()].filter((v) => v === ERR.REFUSED_STREAM).length;
    expect(refused > 0 || c.goaway === ERR.ENHANCE_YOUR_CALM).toBe(true);
    c.close();
    const s = connect();
    expect(await call(s)).toBe("0");
    s.close();
  }, 15_000);
});

describe("rapid reset", () => {
  test("a burst of 20,000 HEADERS+RST_STREAM closes that connection; another client keeps being served", async () => {
    resetCounters();
    lines.length = 0;
    const other = connect();
    let attackOver = false;
    const otherCodes: string[] = [];
    const otherLoop = (async () => {
      for (let i = 0; i < 2000 && (!attackOver || otherCodes.length < 20); i++)
        otherCodes.push(await call(other));
    })();
    const c = await connectRawH2(server.port);
    let sent = 0;
    for (let batch = 0; batch < 40 && !c.socket.destroyed; batch++) {
      const out: Buffer[] = [];
      for (let i = 0; i < 500; i++, sent++) {
        const id = 1 + 2 * sent;
        out.push(headersFrames(id, grpcRequestHeaders(LIST.path, AUTH), false), rstStream(id));
      }
      c.write(Buffer.concat(out));
      await c.drained();
      await Bun.sleep(1);
    }
    expect(await closedWithin(c.closed, 5000)).toBe(true);
    attackOver = true;
    await otherLoop;
    other.close();
    expect(c.goaway).toBe(ERR.ENHANCE_YOUR_CALM);
    expect(sent).toBeLessThan(20_000); // cut off well before the end of the burst
    expect(lines.some((l) => String(l["msg"]).includes("(rapid reset)"))).toBe(true);
    expect(otherCodes.length).toBeGreaterThanOrEqual(20);
    expect(otherCodes.filter((x) => x !== "0")).toEqual([]);
  }, 30_000);

  test("cancelled calls that did send their request do not count as a reset flood", async () => {
    resetCounters();
    const c = await connectRawH2(server.port);
    // 400 complete requests, each reset right after: a client cancelling its calls, not a flood.
    const out: Buffer[] = [];
    for (let i = 0; i < 400; i++) {
      const id = 1 + 2 * i;
      out.push(
        headersFrames(id, grpcRequestHeaders(LIST.path, AUTH), false),
        dataFrame(id, EMPTY, true),
        rstStream(id),
      );
      if (out.length >= 60) c.write(Buffer.concat(out.splice(0)));
      if (i % 20 === 19) await Bun.sleep(5); // stay under the concurrent-stream limit
    }
    c.write(Buffer.concat(out));
    await Bun.sleep(300);
    expect(c.goaway).toBeNull();
    expect(c.socket.destroyed).toBe(false);
    c.close();
  });
});

describe("idle and half-open connections", () => {
  test("a connection with no stream is closed after the idle timeout", async () => {
    const s = connect();
    const closed = new Promise<void>((r) => s.on("close", () => r()));
    const goaway = new Promise<number>((r) => s.on("goaway", (code: number) => r(code)));
    expect(await call(s)).toBe("0");
    const t0 = performance.now();
    expect(await closedWithin(closed, 4000)).toBe(true);
    const after = performance.now() - t0;
    expect(after).toBeGreaterThan(900);
    expect(await goaway).toBe(http2.constants.NGHTTP2_NO_ERROR);
  });

  test("a connection busy with a long call is not idle", async () => {
    resetCounters(1800);
    const s = connect();
    let closed = false;
    s.on("close", () => {
      closed = true;
    });
    expect(await call(s)).toBe("0"); // longer than the idle timeout
    expect(closed).toBe(false);
    s.close();
  });

  test("TLS without the HTTP/2 preface, and TCP without a TLS handshake, are closed", async () => {
    const t = tls.connect({
      host: "127.0.0.1",
      port: server.port,
      ALPNProtocols: ["h2"],
      rejectUnauthorized: false,
    });
    t.on("error", () => {});
    t.resume(); // read, or the server's close is never seen
    const tlsClosed = new Promise<void>((r) => t.on("close", () => r()));
    const p = net.connect(server.port, "127.0.0.1");
    p.on("error", () => {});
    p.resume();
    const tcpClosed = new Promise<void>((r) => p.on("close", () => r()));
    expect(await closedWithin(tcpClosed, 3000)).toBe(true);
    expect(await closedWithin(tlsClosed, 4000)).toBe(true);
    t.destroy();
    p.destroy();
  });
});

describe("header list size", () => {
  test("a header list over the 16 KiB limit is refused for that stream; the connection serves on", async () => {
    resetCounters();
    const c = await connectRawH2(server.port);
    const big = Array.from({ length: 5 }, (_, i) => [`x-pad-${i}`, "a".repeat(4000)] as [string, string]);
    c.write(
      Buffer.concat([
        headersFrames(1, grpcRequestHeaders(LIST.path, [...AUTH, ...big]), false),
        dataFrame(1, EMPTY, true),
      ]),
    );
    c.write(
      Buffer.concat([
        headersFrames(3, grpcRequestHeaders(LIST.path, AUTH), false),
        dataFrame(3, EMPTY, true),
      ]),
    );
    for (let i = 0; i < 100 && !c.answered.has(3); i++) await Bun.sleep(20);
    expect(c.settings.get(SETTINGS_MAX_HEADER_LIST_SIZE)).toBe(16 * 1024);
    expect(c.answered.has(1)).toBe(false);
    expect(c.resets.get(1)).toBe(ERR.ENHANCE_YOUR_CALM);
    expect(c.answered.has(3)).toBe(true);
    expect(calls).toBe(1);
    c.close();
  });

  test("a 64 KiB+ header list (many headers, or one) is refused and never reaches a handler", async () => {
    for (const big of [
      Array.from({ length: 9 }, (_, i) => [`x-pad-${i}`, "a".repeat(8000)] as [string, string]),
      [["x-pad", "a".repeat(70_000)] as [string, string]],
    ]) {
      resetCounters();
      const c = await connectRawH2(server.port);
      c.write(
        Buffer.concat([
          headersFrames(1, grpcRequestHeaders(LIST.path, [...AUTH, ...big]), false),
          dataFrame(1, EMPTY, true),
        ]),
      );
      for (let i = 0; i < 100 && !c.resets.has(1) && !c.socket.destroyed; i++) await Bun.sleep(20);
      expect(c.answered.has(1)).toBe(false);
      expect(c.resets.has(1) || c.goaway !== null).toBe(true);
      expect(calls).toBe(0);
      c.close();
    }
    const s = connect();
    expect(await call(s)).toBe("0");
    s.close();
  });
});

describe("deadlines", () => {
  test("grpc-timeout 99999999H is clamped to the longest timer, not an instant DEADLINE_EXCEEDED", async () => {
    resetCounters(100);
    const s = connect();
    expect(await call(s, { "grpc-timeout": "99999999H" })).toBe("0");
    expect(await call(s, { "grpc-timeout": "99999999S" })).toBe("0");
    expect(calls).toBe(2);
    // A real deadline still fires.
    resetCounters(500);
    expect(await call(s, { "grpc-timeout": "100m" })).toBe(String(Code.DEADLINE_EXCEEDED));
    s.close();
  });
});

describe("audit of refused calls", () => {
  test("10,000 unauthenticated calls: a few lines and one count line, not 10,000; identified callers are all audited", async () => {
    resetCounters();
    const log: Record<string, unknown>[] = [];
    const srv = await start({}, log);
    try {
      const s = connect(srv.port);
      await new Promise((r) => s.once("remoteSettings", r)); // a client that waits for the limit
      const codes = await Promise.all(Array.from({ length: 10_000 }, () => call(s, { authorization: "" })));
      expect(codes.filter((c) => c !== String(Code.UNAUTHENTICATED))).toEqual([]);
      // Identified callers' lines are never limited.
      for (let i = 0; i < 30; i++) expect(await call(s)).toBe("0");
      s.close();
    } finally {
      await srv.close(); // writes the pending count line
    }
    const refused = log.filter((l) => l["status"] === "UNAUTHENTICATED");
    const perCall = refused.filter((l) => l["method"] === LIST.path);
    const summaries = refused.filter((l) => typeof l["suppressed"] === "number");
    expect(perCall.length).toBe(DEFAULT_SERVER_LIMITS.refusedLinesPerPeer);
    expect(summaries.length).toBe(1);
    expect(summaries[0]).toMatchObject({ peer: "127.0.0.1", suppressed: 10_000 - perCall.length });
    expect(String(summaries[0]?.["msg"])).toContain(
      `${10_000 - perCall.length} more calls from 127.0.0.1 refused with UNAUTHENTICATED`,
    );
    expect(log.filter((l) => l["status"] === "OK" && l["caller"] === "bob").length).toBe(30);
    expect(log.length).toBeLessThan(60);
    expect(calls).toBe(30);
  }, 45_000);
});
