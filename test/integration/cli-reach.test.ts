// The CLI's short words for a node it could not see (src/roles/cli/reach.ts), on the errors the
// product's gRPC client really gives on 127.0.0.1: a closed port, a server certificate from
// another CA, a listener that never answers, several addresses failing differently, and a server
// that answers with an error of its own (reached, so never "unreachable", even when its words
// say ECONNREFUSED). Then the exit policy of status/ps built on them.
// Bounded: a handful of calls, each with a deadline of at most 2 s.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import net from "node:net";
import pino from "pino";
import { generateToken, hashToken, LocalTokenValidator } from "../../src/auth/local.ts";
import { McpAgent } from "../../src/gen/mcp/v1/mcp_pb.ts";
import { operatorPolicy } from "../../src/roles/agent/agent.ts";
import { EXIT_DRIFT } from "../../src/roles/cli/output.ts";
import { describeFailure, fleetExitCode, type NodeFailure } from "../../src/roles/cli/reach.ts";
import { connect } from "../../src/rpc/client.ts";
import { unavailable } from "../../src/rpc/errors.ts";
import { type RunningServer, startServer } from "../../src/rpc/server.ts";
import { freePort } from "../support/env.ts";
import { type TestPki, testPki } from "../support/pki.ts";

const token = generateToken();
let pki: TestPki;
let otherPki: TestPki;
let server: RunningServer;
let silent: net.Server;
const held: net.Socket[] = [];

beforeAll(async () => {
  pki = await testPki("reach");
  otherPki = await testPki("reach-other");
  server = await startServer({
    address: "127.0.0.1:0",
    certPem: pki.certPem,
    keyPem: pki.keyPem,
    validator: new LocalTokenValidator([
      { name: "alice", role: "admin", accountType: "human", sha256: hashToken(token) },
    ]),
    policy: operatorPolicy,
    logger: pino({ level: "silent" }),
    services: [
      {
        desc: McpAgent,
        handlers: {
          // An agent that was reached but could not reach something of its own.
          async listServices() {
            throw unavailable("mcias: connect ECONNREFUSED 127.0.0.1:1 while validating the token");
          },
          async nodeStatus() {
            return { nodeName: "reach" };
          },
        },
      },
    ],
  });
  // Accepts TCP and never says a word: no TLS handshake ever completes.
  silent = net.createServer((s) => {
    held.push(s);
  });
  await new Promise<void>((r) => silent.listen(0, "127.0.0.1", r));
});

afterAll(async () => {
  for (const s of held) s.destroy();
  silent?.close();
  await server?.close();
});

const serverAddr = () => `127.0.0.1:${server.port}`;
const silentAddr = () => `127.0.0.1:${(silent.address() as net.AddressInfo).port}`;

/** The one-line error fanOut keeps for a node (context.ts): the call's message, first line. */
async function errorOf(
  addresses: string[],
  opts: { caPem?: string; token?: string; timeoutMs?: number } = {},
): Promise<string> {
  try {
    const c = await connect(McpAgent, {
      addresses,
      caPem: opts.caPem ?? pki.caPem,
      token: opts.token ?? token,
      connectTimeoutMs: 500,
    });
    try {
      await c.listServices({}, { timeoutMs: opts.timeoutMs ?? 2000 });
    } finally {
      c.close();
    }
  } catch (err) {
    return (err as Error).message.split("\n")[0]!;
  }
  throw new Error("the call succeeded");
}

describe("describeFailure on real client errors", () => {
  test("a closed port: unreachable: connection refused", async () => {
    const dead = `127.0.0.1:${await freePort()}`;
    const err = await errorOf([dead]);
    expect(err).toContain(`ECONNREFUSED ${dead}`);
    expect(describeFailure(err)).toEqual({
      kind: "refused",
      unreachable: true,
      reason: "connection refused",
      cell: "unreachable: connection refused",
    });
  }, 10_000);

  test("a server certificate from another CA: unreachable: TLS: …, short", async () => {
    const err = await errorOf([serverAddr()], { caPem: otherPki.caPem });
    expect(err).toMatch(/^UNAVAILABLE: .*certificate/);
    const f = describeFailure(err);
    expect(f.kind).toBe("tls");
    expect(f.unreachable).toBe(true);
    expect(f.reason).toStartWith("TLS: ");
    expect(f.reason.length).toBeLessThanOrEqual(40);
    expect(f.cell).toBe(`unreachable: ${f.reason}`);
  }, 10_000);

  test("a listener that never answers: unreachable: timeout", async () => {
    const err = await errorOf([silentAddr()], { timeoutMs: 300 });
    expect(err).toStartWith("DEADLINE_EXCEEDED: ");
    expect(describeFailure(err)).toMatchObject({
      kind: "timeout",
      unreachable: true,
      cell: "unreachable: timeout",
    });
  }, 10_000);

  test("several addresses failing differently: each reason once; refused counts for the hint", async () => {
    const dead = `127.0.0.1:${await freePort()}`;
    const err = await errorOf([silentAddr(), dead]);
    expect(err).toStartWith("UNAVAILABLE: no address answered (");
    expect(describeFailure(err)).toEqual({
      kind: "refused",
      unreachable: true,
      reason: "timeout, connection refused",
      cell: "unreachable: timeout, connection refused",
    });
  }, 10_000);

  test("a server that answered with an error is reached: error, not unreachable, whatever its words", async () => {
    const err = await errorOf([serverAddr()]);
    expect(err).toStartWith("UNAVAILABLE: mcias: connect ECONNREFUSED");
    const f = describeFailure(err);
    expect(f).toMatchObject({ kind: "error", unreachable: false });
    expect(f.cell).toBe(`error: ${f.reason}`);
    expect(f.reason.length).toBeLessThanOrEqual(40);
    expect(f.reason.endsWith("…")).toBe(true);

    const bad = await errorOf([serverAddr()], { token: "not-a-token" });
    expect(bad).toStartWith("UNAUTHENTICATED: ");
    expect(describeFailure(bad)).toMatchObject({ kind: "error", unreachable: false });
  }, 10_000);

  test("a name that does not resolve (node's getaddrinfo words): unreachable: unknown host", () => {
    const err = "UNAVAILABLE: No connection established. Last error: getaddrinfo ENOTFOUND nosuch.invalid";
    expect(describeFailure(err)).toMatchObject({ kind: "dns", unreachable: true, reason: "unknown host" });
  });
});

describe("status/ps exit policy", () => {
  const f = (error: string): { failure: NodeFailure } => ({ failure: describeFailure(error) });

  test("0 when all was seen and nothing drifts; EXIT_DRIFT (3) on drift or a node not reached; 1 when a node answered with an error", async () => {
    expect(EXIT_DRIFT).toBe(3);
    const refused = f(await errorOf([`127.0.0.1:${await freePort()}`]));
    const denied = f(await errorOf([serverAddr()], { token: "not-a-token" }));
    expect(fleetExitCode([], 0)).toBe(0);
    expect(fleetExitCode([], 2)).toBe(EXIT_DRIFT);
    expect(fleetExitCode([refused], 0)).toBe(EXIT_DRIFT);
    expect(fleetExitCode([denied], 0)).toBe(1);
    expect(fleetExitCode([refused, denied], 1)).toBe(1);
  }, 10_000);
});
