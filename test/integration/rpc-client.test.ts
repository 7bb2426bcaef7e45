// The product's node:http2 client (src/rpc/client.ts) against the grpc-js client
// (test/support/grpc-js.ts): both call the same real TLS gRPC servers — the real agent (startAgent:
// registry, local tokens, operator policy) and the real server stack with scripted handlers that
// answer every status code — and must give the same answers and the same errors: success, each
// code with a percent-encoded message, deadline, cancel, connection refused, a server cert from
// another CA, the multi-address fallback and a server-streaming method.
// Bounded: a few dozen calls on 127.0.0.1, each with a deadline of at most 10 s.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pino from "pino";
import { generateToken, hashToken, LocalTokenValidator } from "../../src/auth/local.ts";
import { McpAgent } from "../../src/gen/mcp/v1/mcp_pb.ts";
import { operatorPolicy, type RunningAgent, startAgent } from "../../src/roles/agent/agent.ts";
import { connect, type TypedClient } from "../../src/rpc/client.ts";
import { RpcError } from "../../src/rpc/errors.ts";
import { type RunningServer, startServer } from "../../src/rpc/server.ts";
import {
  CallError,
  Code,
  codeName,
  decodeGrpcMessage,
  encodeGrpcTimeout as grpcTimeout,
  unframe,
} from "../../src/rpc/wire.ts";
import { testAgentSettings } from "../support/agent-context.ts";
import { freePort } from "../support/env.ts";
import { connectGrpcJs } from "../support/grpc-js.ts";
import { type TestPki, testPki } from "../support/pki.ts";

type Client = TypedClient<typeof McpAgent>;
type Connect = typeof connect;
const CLIENTS: [string, Connect][] = [
  ["grpc-js", connectGrpcJs],
  ["http2", connect],
];

/** The settled outcome of a call: its value, or the CallError's code and message. */
async function outcome(p: Promise<unknown>): Promise<{ ok: unknown } | { code: number; message: string }> {
  try {
    return { ok: await p };
  } catch (err) {
    expect(err).toBeInstanceOf(CallError);
    const e = err as CallError;
    return { code: e.code, message: e.message };
  }
}

let inHandler = 0;
let maxInHandler = 0;
const token = generateToken();
const guest = generateToken();
let pki: TestPki;
let otherPki: TestPki;
let scripted: RunningServer;
let agent: RunningAgent;
let dir: string;
const opened: Client[] = [];

async function client(
  which: Connect,
  address: string | string[],
  opts: { token?: string | null; caPem?: string } = {},
) {
  const c = (await which(McpAgent, {
    addresses: Array.isArray(address) ? address : [address],
    caPem: opts.caPem ?? pki.caPem,
    token: opts.token === undefined ? token : opts.token,
    defaultTimeoutMs: 10_000,
    connectTimeoutMs: 1000,
  })) as Client;
  opened.push(c);
  return c;
}

beforeAll(async () => {
  pki = await testPki("h2");
  otherPki = await testPki("other");
  const validator = new LocalTokenValidator([
    { name: "alice", role: "admin", accountType: "human", sha256: hashToken(token) },
    { name: "gus", role: "guest", accountType: "human", sha256: hashToken(guest) },
  ]);
  // Scripted answers: getServiceStatus fails with the code named in the request ("code-5"),
  // healthCheck sleeps past the caller's deadline, logs streams two lines.
  scripted = await startServer({
    address: "127.0.0.1:0",
    certPem: pki.certPem,
    keyPem: pki.keyPem,
    validator,
    policy: operatorPolicy,
    logger: pino({ level: "silent" }),
    services: [
      {
        desc: McpAgent,
        handlers: {
          async getServiceStatus(req: { name: string }) {
            const code = Number(req.name.replace("code-", ""));
            throw new RpcError(code, `scripted ${codeName(code)}: 100% "ünïcode" done, a/b?c=d`);
          },
          async healthCheck(_req: unknown, ctx: { signal: AbortSignal }) {
            await new Promise((r) => {
              const t = setTimeout(r, 3000);
              ctx.signal.addEventListener("abort", () => {
                clearTimeout(t);
                r(null);
              });
            });
            return { status: "late" };
          },
          async listServices() {
            inHandler++;
            maxInHandler = Math.max(maxInHandler, inHandler);
            await Bun.sleep(5);
            inHandler--;
            return { services: [] };
          },
          async nodeStatus() {
            return { nodeName: "scripted", agentVersion: "x".repeat(200_000) };
          },
          async logs(_req: unknown, _ctx: unknown, send: (m: unknown) => Promise<void>) {
            await send({ component: "a", line: "one" });
            await send({ component: "a", line: "two" });
          },
        },
      },
    ],
  });
  dir = mkdtempSync(join(tmpdir(), "mcp-h2-test-"));
  agent = await startAgent(
    await testAgentSettings(dir, pki, {
      nodeName: "h2-node",
      validator,
      pullPolicy: "missing",
    }),
  );
});

afterAll(async () => {
  for (const c of opened) c.close();
  await scripted?.close();
  await agent?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

const agentAddr = () => `127.0.0.1:${agent.port}`;
const scriptedAddr = () => `127.0.0.1:${scripted.port}`;

/** Runs the same call through both clients and returns [grpc-js, http2] outcomes. */
async function both(
  address: string | string[],
  call: (c: Client) => Promise<unknown>,
  opts: { token?: string | null; caPem?: string } = {},
) {
  const out = [];
  for (const [, which] of CLIENTS) out.push(await outcome(client(which, address, opts).then(call)));
  return out;
}

describe("against the real agent", () => {
  test("success: the same messages", async () => {
    const [a, b] = await both(agentAddr(), (c) => c.listServices({}));
    expect(b).toEqual(a);
    expect("ok" in a!).toBe(true);
    const [h1, h2] = await both(agentAddr(), async (c) => (await c.healthCheck({})).status);
    expect(h2).toEqual(h1);
  }, 20_000);

  test("no token, an unknown token and a guest: the same codes and messages", async () => {
    for (const t of [null, generateToken(), guest]) {
      const [a, b] = await both(agentAddr(), (c) => c.listServices({}), { token: t });
      expect("code" in a!).toBe(true);
      expect(b).toEqual(a);
    }
  }, 20_000);
});

describe("against scripted answers", () => {
  test("every status code, with a percent-encoded message, arrives unchanged", async () => {
    for (let code = 1; code <= 16; code++) {
      const [a, b] = await both(scriptedAddr(), (c) => c.getServiceStatus({ name: `code-${code}` }));
      expect(a).toEqual({
        code,
        message: `${codeName(code)}: scripted ${codeName(code)}: 100% "ünïcode" done, a/b?c=d`,
      });
      expect(b).toEqual(a);
    }
  }, 30_000);

  test("a large answer (200 kB) decodes the same", async () => {
    const [a, b] = await both(scriptedAddr(), async (c) => (await c.nodeStatus({})).agentVersion.length);
    expect(a).toEqual({ ok: 200_000 });
    expect(b).toEqual(a);
  }, 20_000);

  test("a burst of 1,000 calls on a fresh connection waits for stream slots instead of being refused", async () => {
    // The server advertises 100 concurrent streams; Bun's client would send the whole burst
    // before SETTINGS arrive and get REFUSED_STREAM (and then the connection closed) for the rest.
    const c = await client(connect, scriptedAddr());
    maxInHandler = 0;
    const results = await Promise.all(
      Array.from({ length: 1000 }, () => outcome(c.listServices({}).then(() => "ok"))),
    );
    expect(results.filter((r) => !("ok" in r))).toEqual([]);
    expect(maxInHandler).toBeGreaterThan(1);
    expect(maxInHandler).toBeLessThanOrEqual(100);
  }, 30_000);

  test("deadline: DEADLINE_EXCEEDED from both, well before the handler would answer", async () => {
    for (const [, which] of CLIENTS) {
      const c = await client(which, scriptedAddr());
      const t0 = performance.now();
      const r = await outcome(c.healthCheck({}, { timeoutMs: 300 }));
      expect(performance.now() - t0).toBeLessThan(2500);
      expect(r).toMatchObject({ code: Code.DEADLINE_EXCEEDED });
      expect((r as { message: string }).message).toStartWith("DEADLINE_EXCEEDED: Deadline exceeded");
    }
  }, 20_000);

  test("an aborted signal cancels: CANCELLED from both", async () => {
    const results = [];
    for (const [, which] of CLIENTS) {
      const c = await client(which, scriptedAddr());
      const ac = new AbortController();
      setTimeout(() => ac.abort(), 200);
      results.push(await outcome(c.healthCheck({}, { signal: ac.signal })));
    }
    expect(results[0]).toEqual({ code: Code.CANCELLED, message: "CANCELLED: Cancelled on client" });
    expect(results[1]).toEqual(results[0]);
  }, 20_000);

  test("a server-streaming method yields the same lines", async () => {
    const lines = [];
    for (const [, which] of CLIENTS) {
      const c = await client(which, scriptedAddr());
      const got: string[] = [];
      for await (const m of c.logs({ service: "x" })) got.push(m.line);
      lines.push(got);
    }
    expect(lines[0]).toEqual(["one", "two"]);
    expect(lines[1]).toEqual(lines[0]);
  }, 20_000);
});

describe("connection failures", () => {
  test("connection refused: the same one-line UNAVAILABLE naming the address", async () => {
    const dead = `127.0.0.1:${await freePort()}`;
    const [a, b] = await both(dead, (c) => c.listServices({}));
    expect(a).toEqual({
      code: Code.UNAVAILABLE,
      message: `UNAVAILABLE: No connection established. Last error: connect ECONNREFUSED ${dead}`,
    });
    expect(b).toEqual(a);
  }, 20_000);

  test("a server certificate from another CA: the same UNAVAILABLE", async () => {
    const [a, b] = await both(agentAddr(), (c) => c.listServices({}), { caPem: otherPki.caPem });
    for (const r of [a, b]) {
      expect(r).toMatchObject({ code: Code.UNAVAILABLE });
      expect((r as { message: string }).message).toMatch(/^UNAVAILABLE: .*certificate/);
    }
    expect(b).toEqual(a);
  }, 20_000);

  test("several addresses: the first that answers is used; none answering names each", async () => {
    const dead = `127.0.0.1:${await freePort()}`;
    for (const [, which] of CLIENTS) {
      const c = await client(which, [dead, agentAddr()]);
      expect(c.address).toBe(agentAddr());
      expect(await outcome(c.listServices({}))).toMatchObject({ ok: expect.anything() });
    }
    const dead2 = `127.0.0.1:${await freePort()}`;
    const r = await outcome(client(connect, [dead, dead2]));
    expect(r).toEqual({
      code: Code.UNAVAILABLE,
      message: `UNAVAILABLE: no address answered (${dead}: connect ECONNREFUSED ${dead}; ${dead2}: connect ECONNREFUSED ${dead2})`,
    });
  }, 20_000);
});

describe("reconnect", () => {
  test("a client kept across a server restart: UNAVAILABLE while it is down, answers again after", async () => {
    const start = (address: string) =>
      startServer({
        address,
        certPem: pki.certPem,
        keyPem: pki.keyPem,
        validator: new LocalTokenValidator([
          { name: "alice", role: "admin", accountType: "human", sha256: hashToken(token) },
        ]),
        policy: operatorPolicy,
        logger: pino({ level: "silent" }),
        services: [{ desc: McpAgent, handlers: { nodeStatus: async () => ({ nodeName: "restarted" }) } }],
      });
    let srv = await start("127.0.0.1:0");
    const addr = `127.0.0.1:${srv.port}`;
    try {
      const c = await client(connect, addr);
      expect((await c.nodeStatus({})).nodeName).toBe("restarted");
      await srv.close();
      expect(await outcome(c.nodeStatus({}, { timeoutMs: 2000 }))).toMatchObject({ code: Code.UNAVAILABLE });
      srv = await start(addr);
      expect(await outcome(c.nodeStatus({}, { timeoutMs: 5000 }))).toEqual({
        ok: expect.objectContaining({ nodeName: "restarted" }),
      });
    } finally {
      await srv.close();
    }
  }, 20_000);
});

describe("process lifetime", () => {
  test("an idle session never holds a process open; a call in flight does", async () => {
    // A child that calls (slow handler, 3 s) without ever closing its client: it must wait for
    // the answer (the session is held while a call runs) and then exit on its own.
    const script = join(dir, "child.ts");
    const src = join(import.meta.dir, "../../src");
    await Bun.write(
      script,
      [
        `import { McpAgent } from "${src}/gen/mcp/v1/mcp_pb.ts";`,
        `import { connect } from "${src}/rpc/client.ts";`,
        `const c = await connect(McpAgent, { addresses: ["${scriptedAddr()}"], caPem: ${JSON.stringify(pki.caPem)}, token: "${token}" });`,
        "const r = await c.healthCheck({}, { timeoutMs: 8000 });",
        "console.log(r.status);",
      ].join("\n"),
    );
    const t0 = performance.now();
    const p = Bun.spawn([process.execPath, script], { stdout: "pipe", stderr: "pipe" });
    const killer = setTimeout(() => p.kill("SIGKILL"), 15_000);
    const code = await p.exited;
    clearTimeout(killer);
    const ms = performance.now() - t0;
    expect(await new Response(p.stderr).text()).toBe("");
    expect(code).toBe(0);
    expect((await new Response(p.stdout).text()).trim()).toBe("late");
    expect(ms).toBeGreaterThan(2500);
    expect(ms).toBeLessThan(10_000);
  }, 20_000);
});

describe("wire helpers", () => {
  test("status names match grpc-js's", async () => {
    const { status } = await import("@grpc/grpc-js");
    for (let code = 0; code <= 16; code++) expect(codeName(code)).toBe(status[code]!);
  });

  test("grpc-timeout stays within 8 digits", () => {
    expect(grpcTimeout(60_000)).toBe("60000m");
    expect(grpcTimeout(99_999_999)).toBe("99999999m");
    expect(grpcTimeout(100_000_000)).toBe("100000S");
  });

  test("grpc-message decoding keeps undecodable text as it is", () => {
    expect(decodeGrpcMessage("a%20b%C3%BC")).toBe("a bü");
    expect(decodeGrpcMessage("100%")).toBe("100%");
  });

  test("framing: messages split, truncation and compression refused", () => {
    const two = Buffer.from([0, 0, 0, 0, 1, 7, 0, 0, 0, 0, 0]);
    expect(unframe(two).map((b) => [...b])).toEqual([[7], []]);
    expect(() => unframe(Buffer.from([0, 0, 0, 0, 2, 7]))).toThrow("Truncated gRPC message");
    expect(() => unframe(Buffer.from([1, 0, 0, 0, 0]))).toThrow("compressed");
  });
});
