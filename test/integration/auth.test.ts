// Auth and audit of the agent's gRPC API over real TLS (SPEC §5.1–5.2): an in-process agent on
// 127.0.0.1 with a real sqlite registry, local tokens and (second agent) a real HTTPS fake MCIAS.
// Every call is checked for its status code AND for exactly one audit line; no log line may ever
// contain a token.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import tls from "node:tls";
import { status } from "@grpc/grpc-js";
import pino, { type Logger } from "pino";
import type { TokenValidator } from "../../src/auth/identity.ts";
import { generateToken, hashToken, LocalTokenValidator } from "../../src/auth/local.ts";
import { CachedValidator, MciasClient } from "../../src/auth/mcias.ts";
import { McpAgent } from "../../src/gen/mcp/v1/mcp_pb.ts";
import { operatorPolicy, type RunningAgent, startAgent } from "../../src/roles/agent/agent.ts";
import { connect, type TypedClient } from "../../src/rpc/client.ts";
import { startServer } from "../../src/rpc/server.ts";
import { type FakeMcias, startFakeMcias } from "../fakes/mcias.ts";
import { testAgentSettings } from "../support/agent-context.ts";
import { type TestPki, testPki } from "../support/pki.ts";
import { failure } from "../support/scripted-server.ts";

// ---- helpers ---------------------------------------------------------------------------------

/** A pino logger writing JSON lines into memory, so audit lines can be inspected. */
function memoryLogger(): { logger: Logger; lines: () => Record<string, unknown>[]; raw: () => string } {
  const chunks: string[] = [];
  const logger = pino({ level: "info" }, { write: (s: string) => void chunks.push(s) });
  const raw = () => chunks.join("");
  const lines = () =>
    raw()
      .split("\n")
      .filter((l) => l.trim() !== "")
      .map((l) => JSON.parse(l) as Record<string, unknown>);
  return { logger, lines, raw };
}

/** The rejection of a call (the BUN-NOTES trap: never `rejects.toMatchObject` here). */
async function drain(stream: AsyncIterable<unknown>): Promise<void> {
  for await (const _ of stream) {
    // nothing is expected: the call fails before any message
  }
}

interface TestAgent {
  agent: RunningAgent;
  address: string;
  log: ReturnType<typeof memoryLogger>;
  dir: string;
  client(token?: string | null, caPem?: string): Promise<TypedClient<typeof McpAgent>>;
  /** Runs one call and asserts it produced exactly one audit line; returns that line. */
  audited(fn: () => Promise<unknown>): Promise<Record<string, unknown>>;
  close(): Promise<void>;
}

async function startTestAgent(pki: TestPki, validator: TokenValidator, node: string): Promise<TestAgent> {
  const dir = mkdtempSync(join(tmpdir(), "mcp-auth-test-"));
  const log = memoryLogger();
  const agent = await startAgent(
    await testAgentSettings(dir, pki, {
      nodeName: node,
      validator,
      pullPolicy: "missing",
      logger: log.logger,
      // SPEC §5.2: system accounts operate only when listed.
      operators: ["ci-bot", "mcp-sys"],
    }),
  );
  const address = `127.0.0.1:${agent.port}`;
  const clients: TypedClient<typeof McpAgent>[] = [];
  const auditLines = () => log.lines().filter((l) => l.audit === true);
  return {
    agent,
    address,
    log,
    dir,
    async client(token, caPem = pki.caPem) {
      const c = await connect(McpAgent, { addresses: [address], caPem, token, defaultTimeoutMs: 10_000 });
      clients.push(c);
      return c;
    },
    async audited(fn) {
      const before = auditLines().length;
      await fn();
      const after = auditLines();
      expect(after.length - before).toBe(1);
      return after[after.length - 1]!;
    },
    async close() {
      for (const c of clients) c.close();
      await agent.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

function expectAuditShape(line: Record<string, unknown>, method: string, caller: string, st: string) {
  expect(line.method).toBe(`/mcp.v1.McpAgent/${method}`);
  expect(line.caller).toBe(caller);
  expect(line.status).toBe(st);
  expect(line.peer).toBeString();
  expect(line.peer as string).toContain("127.0.0.1");
  expect(line.duration_ms).toBeNumber();
  expect(line.duration_ms as number).toBeGreaterThanOrEqual(0);
}

// ---- local-token agent -----------------------------------------------------------------------

/**
 * The services an agent manages (not containers it only discovered: the live view records every
 * container on the host as it appears, so other tests' containers show up with desired `ignore`).
 */
function managed<T extends { components: { desiredState: string }[] }>(services: T[]): T[] {
  return services.filter((s) => s.components.some((c) => c.desiredState !== "ignore"));
}

const tokens = {
  admin: generateToken(),
  user: generateToken(),
  guest: generateToken(),
  expired: generateToken(),
  system: generateToken(),
  unlisted: generateToken(),
  unknown: generateToken(),
};

let pki: TestPki;
let otherPki: TestPki;
let local: TestAgent;

beforeAll(async () => {
  [pki, otherPki] = await Promise.all([testPki("auth"), testPki("other")]);
  const validator = new LocalTokenValidator([
    { name: "alice", role: "admin", accountType: "human", sha256: hashToken(tokens.admin) },
    { name: "bob", role: "user", accountType: "human", sha256: hashToken(tokens.user) },
    { name: "gus", role: "guest", accountType: "human", sha256: hashToken(tokens.guest) },
    {
      name: "old",
      role: "user",
      accountType: "human",
      sha256: hashToken(tokens.expired),
      expires: new Date(Date.now() - 60_000).toISOString(),
    },
    { name: "ci-bot", role: "user", accountType: "system", sha256: hashToken(tokens.system) },
    { name: "backup-bot", role: "user", accountType: "system", sha256: hashToken(tokens.unlisted) },
  ]);
  local = await startTestAgent(pki, validator, "auth-node");
});

afterAll(async () => {
  await local?.close();
});

describe("local tokens over real TLS", () => {
  test("no token → UNAUTHENTICATED, audited with caller '-'", async () => {
    const c = await local.client(null);
    const line = await local.audited(async () => {
      const e = await failure(c.listServices({}));
      expect(e.code).toBe(status.UNAUTHENTICATED);
      expect(e.message).toContain("missing bearer token");
    });
    expectAuditShape(line, "ListServices", "-", "UNAUTHENTICATED");
  });

  test("unknown token → UNAUTHENTICATED", async () => {
    const c = await local.client(tokens.unknown);
    const line = await local.audited(async () => {
      const e = await failure(c.nodeStatus({}));
      expect(e.code).toBe(status.UNAUTHENTICATED);
    });
    expectAuditShape(line, "NodeStatus", "-", "UNAUTHENTICATED");
  });

  test("expired token → UNAUTHENTICATED", async () => {
    const c = await local.client(tokens.expired);
    const line = await local.audited(async () => {
      const e = await failure(c.listServices({}));
      expect(e.code).toBe(status.UNAUTHENTICATED);
      expect(e.details).toContain("expired");
    });
    expectAuditShape(line, "ListServices", "-", "UNAUTHENTICATED");
  });

  test("guest → PERMISSION_DENIED, audited under the guest's name", async () => {
    const c = await local.client(tokens.guest);
    for (const call of [() => c.listServices({}), () => c.nodeStatus({})]) {
      const line = await local.audited(async () => {
        const e = await failure(call());
        expect(e.code).toBe(status.PERMISSION_DENIED);
        expect(e.details).toContain("guest");
      });
      expect(line.caller).toBe("gus");
      expect(line.status).toBe("PERMISSION_DENIED");
    }
  });

  for (const [who, name] of [
    ["admin", "alice"],
    ["user", "bob"],
    ["system", "ci-bot"],
  ] as const) {
    test(`${who} → OK for ListServices and NodeStatus`, async () => {
      const c = await local.client(tokens[who]);
      const l1 = await local.audited(async () => {
        const r = await c.listServices({});
        expect(managed(r.services)).toEqual([]);
      });
      expectAuditShape(l1, "ListServices", name, "OK");
      const l2 = await local.audited(async () => {
        const r = await c.nodeStatus({});
        expect(r.nodeName).toBe("auth-node");
        expect(r.runtime).toBe("podman");
      });
      expectAuditShape(l2, "NodeStatus", name, "OK");
    });
  }

  test("a failure right after a success on the same client reports its code", async () => {
    const c = await local.client(tokens.user);
    expect(managed((await c.listServices({})).services)).toEqual([]);
    const e = await failure(c.getServiceSpec({ name: "nope" }));
    expect(e.code).toBe(status.NOT_FOUND);
  });

  // ExportServiceData is the server-streaming example (the stream is drained to see the status):
  // an error raised before the first message is audited and reported like a unary one.
  test("server-streaming method: its own error when authenticated, UNAUTHENTICATED otherwise", async () => {
    const authed = await local.client(tokens.admin);
    const l1 = await local.audited(async () => {
      const e = await failure(drain(authed.exportServiceData({ serviceName: "x" })));
      expect(e.code).toBe(status.NOT_FOUND);
    });
    expectAuditShape(l1, "ExportServiceData", "alice", "NOT_FOUND");

    const anon = await local.client(null);
    const l2 = await local.audited(async () => {
      const e = await failure(drain(anon.exportServiceData({ serviceName: "x" })));
      expect(e.code).toBe(status.UNAUTHENTICATED);
    });
    expectAuditShape(l2, "ExportServiceData", "-", "UNAUTHENTICATED");

    const guest = await local.client(tokens.guest);
    const e = await failure(drain(guest.exportServiceData({ serviceName: "x" })));
    expect(e.code).toBe(status.PERMISSION_DENIED);
  });

  test("a client trusting another CA is refused (UNAVAILABLE), and nothing reaches the handlers", async () => {
    const before = local.log.lines().filter((l) => l.audit === true).length;
    const c = await local.client(tokens.admin, otherPki.caPem);
    const e = await failure(c.listServices({}, { timeoutMs: 5000 }));
    expect(e.code).toBe(status.UNAVAILABLE);
    expect(local.log.lines().filter((l) => l.audit === true).length).toBe(before);
  });
});

describe("TLS version", () => {
  const handshake = (opts: tls.ConnectionOptions) =>
    new Promise<{ ok: true; protocol: string | null } | { ok: false; error: Error }>((resolve) => {
      const sock = tls.connect({
        host: "127.0.0.1",
        port: local.agent.port,
        ca: pki.caPem,
        servername: "localhost",
        ALPNProtocols: ["h2"],
        ...opts,
      });
      const timer = setTimeout(() => {
        sock.destroy();
        resolve({ ok: false, error: new Error("handshake timed out") });
      }, 5000);
      sock.once("secureConnect", () => {
        clearTimeout(timer);
        const protocol = sock.getProtocol();
        sock.destroy();
        resolve({ ok: true, protocol });
      });
      sock.once("error", (error) => {
        clearTimeout(timer);
        sock.destroy();
        resolve({ ok: false, error });
      });
    });

  test("a TLS 1.2-only client is refused by the server", async () => {
    // minVersion is explicit: importing the rpc layer raises the process-wide default to 1.3,
    // and the refusal must come from the server, not from a client that cannot offer 1.2.
    const r = await handshake({ minVersion: "TLSv1.2", maxVersion: "TLSv1.2" });
    expect(r.ok).toBe(false);
    // An ALERT is what the server sent back: "tlsv1 alert protocol version".
    if (!r.ok) expect(r.error.message).toMatch(/alert[ _]protocol[ _]version/i);
  });

  test("a TLS 1.3 client with the same CA succeeds", async () => {
    const r = await handshake({ minVersion: "TLSv1.3" });
    expect(r).toEqual({ ok: true, protocol: "TLSv1.3" });
  });
});

describe("bind address", () => {
  const base = () => ({
    certPem: pki.certPem,
    keyPem: pki.keyPem,
    validator: new LocalTokenValidator([]),
    policy: operatorPolicy,
    logger: pino({ level: "silent" }),
    services: [{ desc: McpAgent, handlers: {} }],
  });

  test("0.0.0.0 without allowAnyAddr throws a clear error", async () => {
    const e = await startServer({ ...base(), address: "0.0.0.0:0" }).then(
      () => null,
      (err: unknown) => err as Error,
    );
    expect(e).toBeInstanceOf(Error);
    expect(e!.message).toContain("refusing to bind 0.0.0.0:0");
    expect(e!.message).toContain("--allow-any-addr");
    // Other spellings of the unspecified address bind every interface too (measured: "0" and
    // "[::0]" listen on 0.0.0.0 / ::), so they are refused the same way.
    for (const address of ["[::]:0", "0:0", "[::0]:0", "0.0.0.00:0"]) {
      const e2 = await startServer({ ...base(), address }).then(
        () => null,
        (err: unknown) => err as Error,
      );
      expect(e2?.message).toContain(`refusing to bind ${address}`);
    }
  });

  test("0.0.0.0 with allowAnyAddr binds", async () => {
    const srv = await startServer({ ...base(), address: "0.0.0.0:0", allowAnyAddr: true });
    try {
      expect(srv.port).toBeGreaterThan(0);
    } finally {
      await srv.close();
    }
  });
});

// ---- MCIAS-backed agent ----------------------------------------------------------------------

describe("MCIAS mode", () => {
  test("a system account not in [auth] operators → PERMISSION_DENIED, audited under its name", async () => {
    const c = await local.client(tokens.unlisted);
    const line = await local.audited(async () => {
      const e = await failure(c.listServices({}));
      expect(e.code).toBe(status.PERMISSION_DENIED);
      expect(e.details).toBe("system account backup-bot is not in this daemon's [auth] operators");
    });
    expectAuditShape(line, "ListServices", "backup-bot", "PERMISSION_DENIED");
  });

  let fake: FakeMcias;
  let agent: TestAgent;
  let fakeStopped = false;
  const issued: string[] = [];

  beforeAll(async () => {
    fake = await startFakeMcias({
      users: [
        { username: "carol", password: "pw-carol", roles: ["user"], accountType: "human" },
        { username: "gina", password: "pw-gina", roles: ["guest"], accountType: "human" },
        { username: "mcp-sys", password: "pw-sys", roles: ["user"], accountType: "system" },
      ],
    });
    const validator = new CachedValidator(
      new MciasClient({
        serverUrl: fake.url,
        caCertPath: fake.caCertPath,
        serviceName: "mcp-agent",
        timeoutMs: 3000,
      }),
    );
    agent = await startTestAgent(pki, validator, "mcias-node");
  });

  afterAll(async () => {
    await agent?.close();
    if (!fakeStopped) await fake?.stop();
  });

  const token = (user: string) => {
    const t = fake.issueToken(user);
    issued.push(t);
    return t;
  };

  test("good user token → OK", async () => {
    const c = await agent.client(token("carol"));
    const line = await agent.audited(async () => {
      expect(managed((await c.listServices({})).services)).toEqual([]);
    });
    expectAuditShape(line, "ListServices", "carol", "OK");
  });

  test("system account listed in [auth] operators → OK", async () => {
    const c = await agent.client(token("mcp-sys"));
    expect((await c.nodeStatus({})).nodeName).toBe("mcias-node");
  });

  test("guest → PERMISSION_DENIED", async () => {
    const c = await agent.client(token("gina"));
    const line = await agent.audited(async () => {
      const e = await failure(c.listServices({}));
      expect(e.code).toBe(status.PERMISSION_DENIED);
    });
    expect(line.caller).toBe("gina");
  });

  test("invalid token → UNAUTHENTICATED", async () => {
    const forged = `${token("carol").slice(0, -4)}AAAA`;
    issued.push(forged);
    const c = await agent.client(forged);
    const e = await failure(c.listServices({}));
    expect(e.code).toBe(status.UNAUTHENTICATED);
    const expired = fake.issueToken("carol", { expired: true });
    issued.push(expired);
    const c2 = await agent.client(expired);
    expect((await failure(c2.listServices({}))).code).toBe(status.UNAUTHENTICATED);
  });

  test("a token issued for another service → UNAUTHENTICATED, one line (issue 16 finding 8)", async () => {
    const t = fake.issueToken("carol", { service: "other" });
    issued.push(t);
    const e = await failure((await agent.client(t)).listServices({}));
    expect(e.code).toBe(status.UNAUTHENTICATED);
    expect(e.details).toBe('token was issued for service "other", not for MCP (mcp, mcp-master, mcp-agent)');
  });

  test("100 RPCs with one token within 30 s validate once with MCIAS", async () => {
    const c = await agent.client(token("carol"));
    const before = fake.validateCalls();
    const started = Date.now();
    for (let i = 0; i < 100; i++) {
      const r = await c.listServices({});
      expect(r).toBeDefined();
    }
    expect(Date.now() - started).toBeLessThan(30_000);
    expect(fake.validateCalls() - before).toBe(1);

    // Concurrent first use of a fresh token shares one in-flight validation.
    const c2 = await agent.client(token("mcp-sys"));
    const before2 = fake.validateCalls();
    const all = await Promise.all(Array.from({ length: 20 }, () => c2.listServices({})));
    expect(all.length).toBe(20);
    expect(fake.validateCalls() - before2).toBe(1);
  });

  test("MCIAS down, cold cache → UNAVAILABLE with a clear message, never OK", async () => {
    const warm = token("carol");
    const cold = token("carol");
    const cw = await agent.client(warm);
    expect(managed((await cw.listServices({})).services)).toEqual([]);
    await fake.stop();
    fakeStopped = true;

    const c = await agent.client(cold);
    const line = await agent.audited(async () => {
      const e = await failure(c.listServices({}));
      expect(e.code).toBe(status.UNAVAILABLE);
      expect(e.details).toContain("token validation failed");
      expect(e.details).toContain("cannot reach mcias");
    });
    expectAuditShape(line, "ListServices", "-", "UNAVAILABLE");
    // Still down on a retry (an outage is not cached as a verdict, and never becomes OK).
    expect((await failure(c.nodeStatus({}))).code).toBe(status.UNAVAILABLE);
    // A token validated within the last 30 s keeps working from the cache.
    expect(managed((await cw.listServices({})).services)).toEqual([]);
  });

  test("no log line of the MCIAS agent contains a token", () => {
    const raw = agent.log.raw();
    expect(agent.log.lines().filter((l) => l.audit === true).length).toBeGreaterThan(100);
    for (const t of issued) {
      expect(raw.includes(t)).toBe(false);
      // Not even the signature part alone.
      expect(raw.includes(t.split(".")[2]!)).toBe(false);
    }
  });
});

describe("audit totals (local agent)", () => {
  test("every audit line is complete JSON and no log line contains a token", () => {
    const lines = local.log.lines();
    const audits = lines.filter((l) => l.audit === true);
    expect(audits.length).toBeGreaterThanOrEqual(15);
    for (const a of audits) {
      expect(Object.keys(a)).toEqual(
        expect.arrayContaining(["method", "caller", "peer", "duration_ms", "status"]),
      );
      expect(a.msg).toBe("rpc");
    }
    const raw = local.log.raw();
    for (const t of Object.values(tokens)) {
      expect(raw.includes(t)).toBe(false);
      expect(raw.includes(t.slice("mcpl_".length))).toBe(false);
    }
  });
});
