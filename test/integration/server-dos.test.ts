// Resource findings of the issue 15 security review of the gRPC server and client, each reproduced
// on 127.0.0.1 over real TLS with a token check that takes time (as MCIAS does):
// - a call the client resets kept its grpc-timeout timer, and so the call and its buffers, alive
//   until the deadline (up to ~24.8 days for "99999999H");
// - the request body was read into memory while the caller's token was still being checked;
// - a stream refused with 405/415 stayed open while the client kept its side open, so the
//   connection never counted as idle;
// - a client call that gave up while waiting for a stream slot stayed queued until a slot freed.
// Every loop is bounded; servers and clients are closed in afterAll.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import http2 from "node:http2";
import type { TokenValidator } from "../../src/auth/identity.ts";
import { generateToken, hashToken, LocalTokenValidator } from "../../src/auth/local.ts";
import { McpAgent } from "../../src/gen/mcp/v1/mcp_pb.ts";
import { type Channel, connect } from "../../src/rpc/client.ts";
import { type RunningServer, startServer } from "../../src/rpc/server.ts";
import { methodWires } from "../../src/rpc/service.ts";
import { Code } from "../../src/rpc/wire.ts";
import { testPki } from "../support/pki.ts";
import { failure, scriptedServerOptions } from "../support/scripted-server.ts";

const token = generateToken();
const AUTH_MS = 1500;
let pki: { certPem: string; keyPem: string; caPem: string };
let slow: RunningServer;
const lines: Record<string, unknown>[] = [];
const opened: { close(): void }[] = [];
const LIST = methodWires(McpAgent).get("listServices")!;

/** A real token check that takes AUTH_MS, as a remote identity service may. */
function slowValidator(): TokenValidator {
  const inner = new LocalTokenValidator([
    { name: "bob", role: "user", accountType: "human", sha256: hashToken(token) },
  ]);
  return {
    validate: async (t) => {
      await Bun.sleep(AUTH_MS);
      return inner.validate(t);
    },
  };
}

let holdMs = 0;
beforeAll(async () => {
  pki = await testPki("dos");
  slow = await startServer(
    scriptedServerOptions(
      "127.0.0.1:0",
      pki,
      token,
      lines,
      {
        listServices: async () => {
          await Bun.sleep(holdMs);
          return { services: [] };
        },
      },
      { validator: slowValidator(), limits: { idleTimeoutMs: 1000, maxConcurrentStreams: 1 } },
    ),
  );
});

afterAll(async () => {
  for (const c of opened) c.close();
  await slow?.close();
});

function session(): Promise<http2.ClientHttp2Session> {
  return new Promise((resolve, reject) => {
    const s = http2.connect(`https://127.0.0.1:${slow.port}`, {
      ca: pki.caPem,
      servername: "localhost",
      checkServerIdentity: () => undefined,
    });
    s.on("error", () => {});
    s.once("connect", () => resolve(s));
    s.once("error", reject);
    opened.push({ close: () => s.destroy() });
  });
}

describe("the server", () => {
  test("a call reset by its client leaves no deadline timer behind (99999999H)", async () => {
    const s = await session();
    // Bounded: 50 streams, each reset right after its headers and a partial body.
    const closed: Promise<void>[] = [];
    for (let i = 0; i < 50; i++) {
      const st = s.request({
        ":method": "POST",
        ":path": LIST.path,
        "content-type": "application/grpc",
        te: "trailers",
        "grpc-timeout": "99999999H",
        authorization: `Bearer ${token}`,
      });
      st.on("error", () => {});
      st.write(Buffer.from([0, 0, 0, 1, 0])); // a prefix announcing 65536 bytes, then nothing
      closed.push(new Promise((r) => st.once("close", () => r())));
      st.close(http2.constants.NGHTTP2_CANCEL);
      // The server must see the resets while it is still checking the token.
      await Bun.sleep(5);
    }
    await Promise.all(closed);
    // Past the token check, when every call has been answered or dropped.
    await Bun.sleep(AUTH_MS + 500);
    expect(slow.pendingDeadlines()).toBe(0);
    s.destroy();
  }, 20_000);

  test("the request body is not read while the caller's token is being checked", async () => {
    const s = await session();
    const st = s.request({
      ":method": "POST",
      ":path": LIST.path,
      "content-type": "application/grpc",
      te: "trailers",
      authorization: `Bearer not-${token}`,
    });
    st.on("error", () => {});
    const body = Buffer.alloc(5 + 4 * 1024 * 1024);
    body.writeUInt32BE(body.length - 5, 1);
    let flushed = false;
    st.write(body, () => {
      flushed = true;
    });
    // Well inside the token check: a server that reads the body takes all 4 MiB by now; one that
    // does not leaves the client blocked on the flow-control window (64 KiB).
    await Bun.sleep(AUTH_MS / 2);
    expect(flushed).toBe(false);
    const status = await new Promise<string | undefined>((resolve) => {
      let got: string | undefined;
      st.on("response", (h) => {
        got ??= h["grpc-status"] as string | undefined;
      });
      st.on("trailers", (t) => {
        got ??= t["grpc-status"] as string | undefined;
      });
      st.on("close", () => resolve(got));
      st.resume();
    });
    expect(status).toBe(String(Code.UNAUTHENTICATED));
    s.destroy();
  }, 20_000);

  test("a refused (405/415) stream is closed by the server even if the client keeps its side open", async () => {
    for (const headers of [
      { ":method": "GET", ":path": LIST.path },
      { ":method": "POST", ":path": LIST.path, "content-type": "text/plain" },
    ]) {
      const s = await session();
      const st = s.request(headers, { endStream: false });
      st.on("error", () => {});
      let status = 0;
      st.on("response", (h) => {
        status = Number(h[":status"]);
      });
      const closedBy = await Promise.race([
        new Promise<string>((r) => st.once("close", () => r("server"))),
        Bun.sleep(3000).then(() => "nobody"),
      ]);
      expect([405, 415]).toContain(status);
      expect(closedBy).toBe("server");
      // And with no stream left open, the connection is idle: closed after idleTimeoutMs.
      const sessionClosed = await Promise.race([
        new Promise<boolean>((r) => s.once("close", () => r(true))),
        Bun.sleep(5000).then(() => false),
      ]);
      expect(sessionClosed).toBe(true);
    }
  }, 30_000);
});

describe("the client", () => {
  test("calls that gave up waiting for a stream slot leave the queue", async () => {
    // The server takes one stream at a time; one slow call holds it.
    holdMs = 4000;
    const client = await connect(McpAgent, {
      addresses: [`127.0.0.1:${slow.port}`],
      caPem: pki.caPem,
      token,
      defaultTimeoutMs: 10_000,
    });
    opened.push(client);
    const holder = client.listServices({});
    await Bun.sleep(AUTH_MS / 2);
    const waiting = Array.from({ length: 20 }, () => failure(client.listServices({}, { timeoutMs: 200 })));
    const errors = await Promise.all(waiting);
    expect(errors.map((e) => e.code)).toEqual(errors.map(() => Code.DEADLINE_EXCEEDED));
    expect((client as unknown as { channel: Channel }).channel.waitingForSlot()).toBe(0);
    await holder;
    holdMs = 0;
  }, 20_000);
});
