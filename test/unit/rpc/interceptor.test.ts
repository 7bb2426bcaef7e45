// The auth + audit pieces of the interceptor without a network: bearer parsing, the
// identify → authorize split, outage mapping, and the shape of one audit line.
import { describe, expect, test } from "bun:test";
import { Metadata, status } from "@grpc/grpc-js";
import pino from "pino";
import { AuthError } from "../../../src/auth/identity.ts";
import { generateToken, hashToken, LocalTokenValidator } from "../../../src/auth/local.ts";
import { agentPolicy, operatorPolicy } from "../../../src/roles/agent/agent.ts";
import { RpcError } from "../../../src/rpc/errors.ts";
import {
  audit,
  authenticate,
  authorize,
  bearerToken,
  type InterceptorOptions,
  identify,
  type Validator,
} from "../../../src/rpc/interceptor.ts";

function md(...values: string[]): Metadata {
  const m = new Metadata();
  for (const v of values) m.add("authorization", v);
  return m;
}

function memoryLogger() {
  const chunks: string[] = [];
  const logger = pino({ level: "info" }, { write: (s: string) => void chunks.push(s) });
  return { logger, lines: () => chunks.map((c) => JSON.parse(c) as Record<string, unknown>) };
}

async function rejection(p: Promise<unknown>): Promise<RpcError> {
  const e = await p.then(
    () => null,
    (err: unknown) => err,
  );
  expect(e).toBeInstanceOf(RpcError);
  return e as RpcError;
}

describe("bearerToken", () => {
  test("accepts Bearer in any case with surrounding space", () => {
    expect(bearerToken(md("Bearer abc.def-ghi_"))).toBe("abc.def-ghi_");
    expect(bearerToken(md("bearer abc"))).toBe("abc");
    expect(bearerToken(md("BEARER abc"))).toBe("abc");
    expect(bearerToken(md("  Bearer   abc  "))).toBe("abc");
  });

  test("rejects absent, empty, other schemes and tokens with spaces", () => {
    expect(bearerToken(new Metadata())).toBeNull();
    for (const bad of ["", "Bearer", "Bearer ", "Basic abc", "abc", "Bearer a b", "Bearerabc", "Token abc"]) {
      expect(bearerToken(md(bad))).toBeNull();
    }
  });

  test("uses the first authorization value only", () => {
    expect(bearerToken(md("Bearer first", "Bearer second"))).toBe("first");
    expect(bearerToken(md("Basic x", "Bearer second"))).toBeNull();
  });

  test("the metadata key is case-insensitive on the wire (grpc lower-cases it)", () => {
    const m = new Metadata();
    m.set("Authorization", "Bearer abc");
    expect(bearerToken(m)).toBe("abc");
  });
});

describe("identify / authorize / authenticate", () => {
  const admin = generateToken();
  const guest = generateToken();
  const system = generateToken();
  const opts: InterceptorOptions = {
    validator: new LocalTokenValidator([
      { name: "alice", role: "admin", accountType: "human", sha256: hashToken(admin) },
      { name: "gus", role: "guest", accountType: "human", sha256: hashToken(guest) },
      { name: "svc", role: "user", accountType: "system", sha256: hashToken(system) },
    ]),
    policy: operatorPolicy,
    logger: pino({ level: "silent" }),
  };
  const M = "/mcp.v1.McpAgent/ListServices";

  test("a missing token is UNAUTHENTICATED", async () => {
    const e = await rejection(identify(opts, new Metadata()));
    expect(e.code).toBe(status.UNAUTHENTICATED);
    expect(e.message).toBe("missing bearer token");
  });

  test("an unknown token is UNAUTHENTICATED", async () => {
    const e = await rejection(authenticate(opts, M, md(`Bearer ${generateToken()}`)));
    expect(e.code).toBe(status.UNAUTHENTICATED);
  });

  test("a guest is identified, then denied by the policy", async () => {
    const id = await identify(opts, md(`Bearer ${guest}`));
    expect(id.name).toBe("gus");
    let denied: unknown;
    try {
      authorize(opts, M, id);
    } catch (err) {
      denied = err;
    }
    expect(denied).toBeInstanceOf(RpcError);
    expect((denied as RpcError).code).toBe(status.PERMISSION_DENIED);
    expect((await rejection(authenticate(opts, M, md(`Bearer ${guest}`)))).code).toBe(
      status.PERMISSION_DENIED,
    );
  });

  test("admin passes; a system account passes only when listed as an operator", async () => {
    expect((await authenticate(opts, M, md(`Bearer ${admin}`))).name).toBe("alice");
    expect((await rejection(authenticate(opts, M, md(`Bearer ${system}`)))).code).toBe(
      status.PERMISSION_DENIED,
    );
    const listed = { ...opts, policy: agentPolicy({ master: false, operators: ["svc"] }) };
    expect((await authenticate(listed, M, md(`Bearer ${system}`))).name).toBe("svc");
  });

  test("operatorPolicy: humans need user/admin, system accounts must be listed, guests never", () => {
    expect(operatorPolicy(M, { name: "h", roles: ["user"], accountType: "human" })).toBeNull();
    expect(operatorPolicy(M, { name: "h", roles: [], accountType: "human" })).toContain("may not operate");
    expect(operatorPolicy(M, { name: "s", roles: [], accountType: "system" })).toContain("[auth] operators");
    expect(operatorPolicy(M, { name: "s", roles: ["guest"], accountType: "system" })).toContain(
      "s is a guest account and may not operate",
    );
    expect(operatorPolicy(M, { name: "g", roles: ["guest"], accountType: "human" })).toContain(
      "g is a guest account and may not operate",
    );
  });

  test("a validator outage is UNAVAILABLE with the reason; verdicts keep their codes", async () => {
    const down: Validator = {
      validate: () => Promise.reject(new Error("cannot reach mcias at https://127.0.0.1:1: refused\nstack")),
    };
    const e = await rejection(identify({ ...opts, validator: down }, md("Bearer x")));
    expect(e.code).toBe(status.UNAVAILABLE);
    expect(e.message).toBe("token validation failed: cannot reach mcias at https://127.0.0.1:1: refused");

    const denies: Validator = {
      validate: () => Promise.reject(new AuthError("permission_denied", "locked")),
    };
    expect((await rejection(identify({ ...opts, validator: denies }, md("Bearer x")))).code).toBe(
      status.PERMISSION_DENIED,
    );
  });
});

describe("audit", () => {
  test("one info line for OK with the five fields", () => {
    const { logger, lines } = memoryLogger();
    audit(logger, {
      method: "/mcp.v1.McpAgent/Deploy",
      caller: "alice",
      peer: "ipv4:127.0.0.1:5000",
      started: performance.now() - 12,
      code: status.OK,
    });
    const l = lines();
    expect(l.length).toBe(1);
    expect(l[0]).toMatchObject({
      level: 30,
      msg: "rpc",
      audit: true,
      method: "/mcp.v1.McpAgent/Deploy",
      caller: "alice",
      peer: "ipv4:127.0.0.1:5000",
      status: "OK",
    });
    expect(l[0]!.duration_ms as number).toBeGreaterThanOrEqual(12);
    expect(l[0]!.error).toBeUndefined();
  });

  test("failures are warn lines that carry the error text", () => {
    const { logger, lines } = memoryLogger();
    audit(logger, {
      method: "/m/X",
      caller: "-",
      peer: "p",
      started: performance.now(),
      code: status.UNAUTHENTICATED,
      error: "missing bearer token",
    });
    expect(lines()[0]).toMatchObject({
      level: 40,
      status: "UNAUTHENTICATED",
      caller: "-",
      error: "missing bearer token",
    });
  });
});
