import { afterAll, describe, expect, test } from "bun:test";
import { AuthError, type Identity, type TokenValidator } from "../../../src/auth/identity.ts";
import { CachedValidator, MciasClient, MciasError } from "../../../src/auth/mcias.ts";
import { startFakeMcias } from "../../fakes/mcias.ts";

const fake = await startFakeMcias({
  users: [
    { username: "alice", password: "wonderland", roles: ["admin"], accountType: "human" },
    { username: "mcp-operator", password: "s3rvice", roles: ["user"], accountType: "system" },
    { username: "gus", password: "guest", roles: ["guest"], accountType: "human" },
  ],
});
afterAll(() => fake.stop());

const client = new MciasClient({
  serverUrl: fake.url,
  caCertPath: fake.caCertPath,
  serviceName: "mcp",
  timeoutMs: 3000,
});

async function err(p: Promise<unknown>): Promise<unknown> {
  return p.then(
    () => undefined,
    (e: unknown) => e,
  );
}

describe("MciasClient over real HTTPS", () => {
  test("health", async () => {
    await client.health();
    expect(fake.url).toStartWith("https://127.0.0.1:");
  });

  test("login ok forwards service_name and tags", async () => {
    const r = await client.login("alice", "wonderland", { tags: ["env:test"] });
    expect(r.token.split(".").length).toBe(3); // an Ed25519 JWT
    expect(Date.parse(r.expiresAt ?? "")).toBeGreaterThan(Date.now());
    expect(fake.lastLogin()).toEqual({ username: "alice", service_name: "mcp", tags: ["env:test"] });
  });

  test("bad password gives the server's error text", async () => {
    const e = await err(client.login("alice", "nope"));
    expect(e).toBeInstanceOf(MciasError);
    expect((e as MciasError).message).toBe("invalid credentials");
    expect((e as MciasError).status).toBe(401);
  });

  test("fake answers 400 to bad JSON and missing fields", async () => {
    const post = (body: string) =>
      fetch(`${fake.url}/v1/auth/login`, { method: "POST", body, tls: { ca: fake.caCertPem } });
    const bad = await post("{nope");
    expect(bad.status).toBe(400);
    expect(((await bad.json()) as { error: string }).error).toBeString();
    expect((await post(JSON.stringify({ username: "alice" }))).status).toBe(400);
    const noBearer = await fetch(`${fake.url}/v1/token/validate`, {
      method: "POST",
      body: "{}",
      tls: { ca: fake.caCertPem },
    });
    expect(noBearer.status).toBe(401);
    expect(await noBearer.json()).toEqual({ valid: false, error: "missing bearer token" });
  });

  test("validate: ok, invalid, expired", async () => {
    const { token } = await client.login("mcp-operator", "s3rvice");
    const id = await client.validate(token);
    expect(id.name).toBe("mcp-operator");
    expect(id.roles).toEqual(["user"]);
    expect(id.accountType).toBe("system");
    expect(Date.parse(id.expiresAt ?? "")).toBeGreaterThan(Date.now());

    expect(await client.validate(fake.issueToken("gus"))).toMatchObject({ name: "gus", roles: ["guest"] });

    for (const bad of ["garbage", `${token.slice(0, -2)}xx`, fake.issueToken("alice", { expired: true })]) {
      const e = await err(client.validate(bad));
      expect(e).toBeInstanceOf(AuthError);
      expect((e as AuthError).code).toBe("unauthenticated");
    }
  });

  test("without the CA the server is not trusted; unreachable is not an AuthError", async () => {
    const noCa = new MciasClient({ serverUrl: fake.url, serviceName: "mcp", timeoutMs: 3000 });
    const e1 = await err(noCa.validate(fake.issueToken("alice")));
    expect(e1).toBeInstanceOf(MciasError);
    expect((e1 as Error).message).toStartWith("cannot reach mcias at");

    const down = new MciasClient({ serverUrl: "https://127.0.0.1:1", serviceName: "mcp", timeoutMs: 3000 });
    const e2 = await err(down.validate("x"));
    expect(e2).toBeInstanceOf(MciasError);
    expect(e2).not.toBeInstanceOf(AuthError);
    expect((e2 as Error).message).not.toContain("\n");
  });

  test("a custom validatePath is used", async () => {
    const wrong = new MciasClient({
      serverUrl: fake.url,
      caCertPath: fake.caCertPath,
      serviceName: "mcp",
      validatePath: "/v1/other",
    });
    const e = await err(wrong.validate(fake.issueToken("alice")));
    expect(e).toBeInstanceOf(MciasError);
    expect((e as MciasError).status).toBe(404);
  });
});

describe("CachedValidator", () => {
  test("100 validations within the TTL make exactly one MCIAS call; after the TTL, two", async () => {
    const token = fake.issueToken("alice");
    let now = Date.now();
    const cached = new CachedValidator(client, { now: () => now });
    const before = fake.validateCalls();
    for (let i = 0; i < 100; i++) {
      expect((await cached.validate(token)).name).toBe("alice");
      now += 250; // 100 × 250 ms = 25 s < 30 s
    }
    expect(fake.validateCalls() - before).toBe(1);
    now += 5_001; // past 30 s since the first call
    await cached.validate(token);
    expect(fake.validateCalls() - before).toBe(2);
    expect(cached.cacheKeys()).not.toContain(token);
    for (const k of cached.cacheKeys()) {
      expect(k).toMatch(/^[0-9a-f]{64}$/);
      expect(k).not.toBe(token);
    }
  });

  test("concurrent validations share one request", async () => {
    const token = fake.issueToken("mcp-operator");
    const cached = new CachedValidator(client);
    const before = fake.validateCalls();
    const ids = await Promise.all(Array.from({ length: 50 }, () => cached.validate(token)));
    expect(ids.every((i) => i.name === "mcp-operator")).toBe(true);
    expect(fake.validateCalls() - before).toBe(1);
    ids[0]?.roles.push("admin"); // callers get copies, the cache is not poisoned
    expect((await cached.validate(token)).roles).toEqual(["user"]);
  });

  test("negative results are cached at most 5 s", async () => {
    let now = Date.now();
    const cached = new CachedValidator(client, { now: () => now, negativeTtlMs: 60_000 });
    const before = fake.validateCalls();
    for (let i = 0; i < 3; i++) {
      const e = await err(cached.validate("not-a-token"));
      expect((e as AuthError).code).toBe("unauthenticated");
    }
    expect(fake.validateCalls() - before).toBe(1);
    now += 5_001;
    await err(cached.validate("not-a-token"));
    expect(fake.validateCalls() - before).toBe(2);
    expect(cached.cacheKeys()).not.toContain("not-a-token");
  });

  test("infrastructure errors are never cached; cache never outlives the token", async () => {
    class Flaky implements TokenValidator {
      calls = 0;
      async validate(_t: string): Promise<Identity> {
        this.calls++;
        if (this.calls === 1) throw new MciasError("cannot reach mcias");
        return {
          name: "x",
          roles: ["user"],
          accountType: "human",
          expiresAt: new Date(now + 1000).toISOString(),
        };
      }
    }
    let now = Date.now();
    const inner = new Flaky();
    const cached = new CachedValidator(inner, { now: () => now });
    expect(await err(cached.validate("t"))).toBeInstanceOf(MciasError);
    expect((await cached.validate("t")).name).toBe("x");
    expect(inner.calls).toBe(2);
    await cached.validate("t");
    expect(inner.calls).toBe(2);
    now += 1001; // token expired, well within 30 s
    await cached.validate("t");
    expect(inner.calls).toBe(3);
  });

  test("cache size is bounded", async () => {
    const inner: TokenValidator = {
      validate: async (t) => ({ name: t, roles: ["user"], accountType: "human" }),
    };
    const cached = new CachedValidator(inner, { maxEntries: 10 });
    for (let i = 0; i < 25; i++) await cached.validate(`tok-${i}`);
    expect(cached.cacheKeys().length).toBeLessThanOrEqual(10);
  });
});

describe("the service a token was issued for (issue 16 finding 8)", () => {
  const agentSide = new MciasClient({
    serverUrl: fake.url,
    caCertPath: fake.caCertPath,
    serviceName: "mcp-agent",
    timeoutMs: 3000,
  });

  test("a token MCIAS reports as issued for another service is refused with one line", async () => {
    const e = await err(agentSide.validate(fake.issueToken("alice", { service: "other" })));
    expect(e).toBeInstanceOf(AuthError);
    expect((e as AuthError).code).toBe("unauthenticated");
    expect((e as AuthError).message).toBe(
      'token was issued for service "other", not for MCP (mcp, mcp-master, mcp-agent)',
    );
  });

  test("tokens for MCP's own services, or with no service reported, are accepted", async () => {
    for (const service of ["mcp-agent", "mcp", "mcp-master"]) {
      const id = await agentSide.validate(fake.issueToken("alice", { service }));
      expect(id.name).toBe("alice");
    }
    expect((await agentSide.validate(fake.issueToken("alice"))).name).toBe("alice");
  });

  test("a login's service_name is what the fake reports at validation", async () => {
    const other = new MciasClient({ serverUrl: fake.url, caCertPath: fake.caCertPath, serviceName: "other" });
    const { token } = await other.login("alice", "wonderland");
    const e = await err(agentSide.validate(token));
    expect((e as AuthError).message).toContain('issued for service "other"');
    const { token: mine } = await client.login("alice", "wonderland");
    expect((await agentSide.validate(mine)).name).toBe("alice");
  });
});
