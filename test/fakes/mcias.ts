// Contract-faithful fake MCIAS (spec §8) for tests: a real HTTPS server on
// 127.0.0.1 with a certificate from this project's own CA code.
// Public parts follow MCIAS: POST /v1/auth/login {username, password,
// service_name, tags} -> {token, expires_at}; errors {"error": "..."};
// GET /v1/health; tokens are Ed25519-signed JWTs (real signatures, made
// with node:crypto so issueToken can stay synchronous).
// The validation endpoint is this project's inferred, NOT public, shape (see
// src/auth/mcias.ts): POST /v1/token/validate, Bearer required, body {token}. A token issued at
// login carries the login's service_name, and validation reports it (`service_name`), as MCIAS's
// service-context logins imply; a token from issueToken without `service` reports none.

import { generateKeyPairSync, randomBytes, sign, verify } from "node:crypto";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createCA, issueCert } from "../../src/pki/ca.ts";

export interface FakeMciasUser {
  username: string;
  password: string;
  roles: string[];
  accountType: "human" | "system";
}

export interface FakeMcias {
  url: string;
  caCertPem: string;
  caCertPath: string;
  validateCalls(): number;
  loginCalls(): number;
  /** The JSON body of the last accepted login request (password removed). */
  lastLogin(): { username: string; service_name?: unknown; tags?: unknown } | undefined;
  /** `service`: the service the token is issued for (a login's service_name); absent = none. */
  issueToken(username: string, opts?: { expired?: boolean; service?: string }): string;
  stop(): Promise<void>;
}

const ISSUER = "mcias-fake";

export async function startFakeMcias(opts: {
  users: FakeMciasUser[];
  tokenTtlMs?: number;
}): Promise<FakeMcias> {
  const ttlMs = opts.tokenTtlMs ?? 3_600_000;
  const users = new Map(opts.users.map((u) => [u.username, u]));
  const { privateKey, publicKey } = generateKeyPairSync("ed25519");
  let validates = 0;
  let logins = 0;
  let last: ReturnType<FakeMcias["lastLogin"]>;

  const ca = await createCA({ commonName: "fake MCIAS test CA", days: 2 });
  const leaf = await issueCert({
    caCertPem: ca.certPem,
    caKeyPem: ca.keyPem,
    commonName: "mcias.test",
    dnsNames: ["localhost"],
    ipAddresses: ["127.0.0.1"],
    days: 1,
  });
  const dir = await mkdtemp(join(tmpdir(), "fake-mcias-"));
  const caCertPath = join(dir, "ca.pem");
  await writeFile(caCertPath, ca.certPem, { mode: 0o644 });

  const b64 = (v: unknown) => Buffer.from(JSON.stringify(v)).toString("base64url");
  const issueToken = (username: string, o: { expired?: boolean; service?: string } = {}): string => {
    const u = users.get(username);
    if (!u) throw new Error(`fake mcias: no user ${username}`);
    const now = Math.floor(Date.now() / 1000);
    const exp = o.expired ? now - 60 : now + Math.ceil(ttlMs / 1000);
    const signingInput = `${b64({ alg: "EdDSA", typ: "JWT" })}.${b64({
      iss: ISSUER,
      sub: u.username,
      roles: u.roles,
      account_type: u.accountType,
      ...(o.service !== undefined ? { service_name: o.service } : {}),
      iat: now,
      exp,
      jti: randomBytes(12).toString("hex"),
    })}`;
    return `${signingInput}.${sign(null, Buffer.from(signingInput), privateKey).toString("base64url")}`;
  };

  // Returns the claims of a well-signed, unexpired token for a known user.
  const check = (token: string): { sub: string; exp: number; service?: string } | undefined => {
    const parts = token.split(".");
    if (parts.length !== 3) return undefined;
    const [h, p, s] = parts as [string, string, string];
    if (!verify(null, Buffer.from(`${h}.${p}`), publicKey, Buffer.from(s, "base64url"))) return undefined;
    let claims: { sub?: unknown; exp?: unknown; iss?: unknown; service_name?: unknown };
    try {
      claims = JSON.parse(Buffer.from(p, "base64url").toString("utf8"));
    } catch {
      return undefined;
    }
    if (claims.iss !== ISSUER || typeof claims.sub !== "string" || typeof claims.exp !== "number")
      return undefined;
    if (claims.exp <= Date.now() / 1000 || !users.has(claims.sub)) return undefined;
    return typeof claims.service_name === "string"
      ? { sub: claims.sub, exp: claims.exp, service: claims.service_name }
      : { sub: claims.sub, exp: claims.exp };
  };

  const json = (status: number, body: unknown) => Response.json(body, { status });
  const readJson = async (req: Request): Promise<Record<string, unknown> | undefined> => {
    try {
      const v: unknown = await req.json();
      return v !== null && typeof v === "object" && !Array.isArray(v)
        ? (v as Record<string, unknown>)
        : undefined;
    } catch {
      return undefined;
    }
  };

  const server = Bun.serve({
    hostname: "127.0.0.1",
    port: 0,
    tls: { cert: leaf.certPem, key: leaf.keyPem },
    async fetch(req) {
      const path = new URL(req.url).pathname;
      if (path === "/v1/health" && req.method === "GET") return json(200, { status: "ok" });
      if (path === "/v1/auth/login" && req.method === "POST") {
        logins++;
        const body = await readJson(req);
        if (!body) return json(400, { error: "invalid JSON body" });
        const { username, password } = body;
        if (typeof username !== "string" || typeof password !== "string" || !username || !password) {
          return json(400, { error: "username and password are required" });
        }
        const u = users.get(username);
        if (!u || u.password !== password) return json(401, { error: "invalid credentials" });
        last = { username, service_name: body.service_name, tags: body.tags };
        const token = issueToken(
          username,
          typeof body.service_name === "string" ? { service: body.service_name } : {},
        );
        return json(200, { token, expires_at: new Date(Date.now() + ttlMs).toISOString() });
      }
      if (path === "/v1/token/validate" && req.method === "POST") {
        validates++;
        const auth = req.headers.get("authorization") ?? "";
        const bearer = /^Bearer (\S+)$/.exec(auth)?.[1];
        if (!bearer) return json(401, { valid: false, error: "missing bearer token" });
        const body = await readJson(req);
        const token = typeof body?.token === "string" ? body.token : bearer;
        const claims = check(token);
        if (!claims) return json(401, { valid: false, error: "invalid or expired token" });
        const u = users.get(claims.sub) as FakeMciasUser;
        return json(200, {
          valid: true,
          username: u.username,
          roles: u.roles,
          account_type: u.accountType,
          expires_at: new Date(claims.exp * 1000).toISOString(),
          ...(claims.service !== undefined ? { service_name: claims.service } : {}),
        });
      }
      return json(404, { error: "not found" });
    },
  });

  return {
    url: `https://127.0.0.1:${server.port}`,
    caCertPem: ca.certPem,
    caCertPath,
    validateCalls: () => validates,
    loginCalls: () => logins,
    lastLogin: () => last,
    issueToken,
    async stop() {
      await server.stop(true);
      await rm(dir, { recursive: true, force: true });
    },
  };
}
