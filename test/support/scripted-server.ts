// The real server stack (TLS, HTTP/2, limits, auth+audit interceptor) serving McpAgent with a
// test's own scripted handlers, for tests of the transport itself; and the CallError of a call
// that must fail.
import { expect } from "bun:test";
import pino from "pino";
import { hashToken, LocalTokenValidator } from "../../src/auth/local.ts";
import { McpAgent } from "../../src/gen/mcp/v1/mcp_pb.ts";
import { operatorPolicy } from "../../src/roles/agent/agent.ts";
import type { ServerOptions, ServiceRegistration } from "../../src/rpc/server.ts";
import { CallError } from "../../src/rpc/wire.ts";

/**
 * Options of a server on `address` with `tls`'s leaf: one caller, "bob" (role user), holds `token`;
 * the operator policy; every log line is parsed into `log`; `over` adds or replaces (limits).
 */
export function scriptedServerOptions(
  address: string,
  tls: { certPem: string; keyPem: string },
  token: string,
  log: Record<string, unknown>[],
  handlers: ServiceRegistration["handlers"],
  over: Partial<ServerOptions> = {},
): ServerOptions {
  return {
    address,
    certPem: tls.certPem,
    keyPem: tls.keyPem,
    validator: new LocalTokenValidator([
      { name: "bob", role: "user", accountType: "human", sha256: hashToken(token) },
    ]),
    policy: operatorPolicy,
    logger: pino({ level: "info" }, { write: (s: string) => void log.push(JSON.parse(s)) }),
    services: [{ desc: McpAgent, handlers }],
    ...over,
  };
}

/** The CallError `p` rejects with; fails the test when it resolves or rejects with anything else. */
export async function failure(p: Promise<unknown>): Promise<CallError> {
  const e = await p.then(
    () => null,
    (err: unknown) => err,
  );
  expect(e).toBeInstanceOf(CallError);
  return e as CallError;
}
