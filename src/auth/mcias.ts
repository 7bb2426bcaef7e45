// MCIAS adapter (spec §8): login, token validation, health, plus the 30 s
// validation cache used by the agent and master interceptors (§5.2).
//
// Public MCIAS contract (known): POST /v1/auth/login with
// {username, password, service_name, tags} -> {token, expires_at}; tokens are
// Ed25519-signed JWTs sent as `Authorization: Bearer`; errors are
// {"error": "..."}; GET /v1/health.
//
// NOT public — this project's inferred shape, kept here and configurable:
// validation is POST <validatePath> (default /v1/token/validate) with
// `Authorization: Bearer <token>` and body {"token": "<token>"}, answering
// {valid: boolean, username: string, roles: string[],
//  account_type: "human"|"system", expires_at?: string, service_name?: string}
// with 401 (and/or valid:false) for an unknown or expired token.
//
// service_name, when MCIAS reports it, is the service the token was issued for (the login's
// service_name). A token issued for a service outside MCP is refused, so a token a user gave
// another service cannot be replayed here. MCP is one platform of three daemons whose callers
// log in as "mcp" (the CLI), "mcp-master" and "mcp-agent"; those and this daemon's own
// service_name are accepted (MCP_SERVICES).

import { createHash } from "node:crypto";
import { readFile } from "node:fs/promises";
import { type AccountType, AuthError, type Identity, type TokenValidator } from "./identity.ts";

export interface MciasClientOptions {
  serverUrl: string;
  /** PEM file to trust for the MCIAS server; absent = system roots. */
  caCertPath?: string;
  serviceName: string;
  validatePath?: string;
  /** Per request; default 5000. */
  timeoutMs?: number;
  /** Allow an http:// server_url (`[mcias] insecure_http = true`, for tests). */
  insecureHttp?: boolean;
}

/** A failure talking to MCIAS that is not a verdict on a token (bad login, unreachable, 5xx). */
export class MciasError extends Error {
  override name = "MciasError";
  constructor(
    message: string,
    readonly status?: number,
  ) {
    super(message);
  }
}

/** The service names of MCP's own logins (CLI, master, agent): tokens for these are accepted. */
export const MCP_SERVICES: readonly string[] = ["mcp", "mcp-master", "mcp-agent"];

export class MciasClient implements TokenValidator {
  private readonly base: string;
  private readonly services: ReadonlySet<string>;
  private readonly validatePath: string;
  private readonly timeoutMs: number;
  private ca: Promise<string | undefined> | undefined;

  constructor(private readonly opts: MciasClientOptions) {
    let u: URL;
    try {
      u = new URL(opts.serverUrl);
    } catch {
      throw new MciasError(`mcias server_url is not a URL: ${JSON.stringify(opts.serverUrl)}`);
    }
    // http:// would send passwords and bearer tokens in clear: only with an explicit insecure_http.
    if (u.protocol !== "https:" && !(u.protocol === "http:" && opts.insecureHttp === true)) {
      throw new MciasError(
        `mcias server_url must be https:// (tokens are not sent in clear; insecure_http = true allows http:// for tests), got ${u.protocol}`,
      );
    }
    this.base = opts.serverUrl.replace(/\/+$/, "");
    const vp = opts.validatePath ?? "/v1/token/validate";
    this.validatePath = vp.startsWith("/") ? vp : `/${vp}`;
    this.timeoutMs = opts.timeoutMs ?? 5000;
    this.services = new Set([...MCP_SERVICES, opts.serviceName]);
  }

  async login(
    username: string,
    password: string,
    opts: { tags?: string[] } = {},
  ): Promise<{ token: string; expiresAt?: string }> {
    const { status, body } = await this.request("POST", "/v1/auth/login", {
      body: { username, password, service_name: this.opts.serviceName, tags: opts.tags ?? [] },
    });
    if (status < 200 || status > 299) throw new MciasError(errorText(body, status), status);
    const token = field(body, "token");
    if (typeof token !== "string" || token === "")
      throw new MciasError("mcias login: response has no token", status);
    const expiresAt = field(body, "expires_at");
    return typeof expiresAt === "string" ? { token, expiresAt } : { token };
  }

  async validate(token: string): Promise<Identity> {
    if (!token) throw new AuthError("unauthenticated", "missing token");
    const { status, body } = await this.request("POST", this.validatePath, { token, body: { token } });
    if (status === 401 || status === 403 || (status === 200 && field(body, "valid") === false)) {
      throw new AuthError("unauthenticated", "invalid or expired token");
    }
    if (status !== 200) throw new MciasError(`mcias validate: ${errorText(body, status)}`, status);
    const username = field(body, "username");
    const roles = field(body, "roles");
    const accountType = field(body, "account_type");
    if (
      field(body, "valid") !== true ||
      typeof username !== "string" ||
      !Array.isArray(roles) ||
      !roles.every((r) => typeof r === "string")
    ) {
      throw new MciasError("mcias validate: unexpected response shape");
    }
    const issuedFor = field(body, "service_name");
    if (typeof issuedFor === "string" && issuedFor !== "" && !this.services.has(issuedFor)) {
      throw new AuthError(
        "unauthenticated",
        `token was issued for service ${JSON.stringify(issuedFor)}, not for MCP (${[...this.services].join(", ")})`,
      );
    }
    const id: Identity = {
      name: username,
      roles: roles as string[],
      accountType: toAccountType(accountType),
    };
    const exp = field(body, "expires_at");
    if (typeof exp === "string" && exp !== "") id.expiresAt = exp;
    return id;
  }

  /** Resolves when MCIAS answers GET /v1/health with 2xx. */
  async health(): Promise<void> {
    const { status, body } = await this.request("GET", "/v1/health", {});
    if (status < 200 || status > 299)
      throw new MciasError(`mcias health: ${errorText(body, status)}`, status);
  }

  private caPem(): Promise<string | undefined> {
    const path = this.opts.caCertPath;
    if (!path) return Promise.resolve(undefined);
    this.ca ??= readFile(path, "utf8").catch((e: NodeJS.ErrnoException) => {
      this.ca = undefined; // retry next time (file may appear later)
      throw new MciasError(`cannot read mcias ca_cert ${path}: ${e.code ?? e.message}`);
    });
    return this.ca;
  }

  private async request(
    method: "GET" | "POST",
    path: string,
    o: { token?: string; body?: unknown },
  ): Promise<{ status: number; body: unknown }> {
    const ca = await this.caPem();
    const headers: Record<string, string> = { accept: "application/json" };
    if (o.body !== undefined) headers["content-type"] = "application/json";
    if (o.token !== undefined) headers.authorization = `Bearer ${o.token}`;
    const url = this.base + path;
    let res: Response;
    try {
      res = await fetch(url, {
        method,
        headers,
        body: o.body === undefined ? undefined : JSON.stringify(o.body),
        signal: AbortSignal.timeout(this.timeoutMs),
        redirect: "error",
        ...(ca ? { tls: { ca } } : {}),
      });
    } catch (e) {
      const why =
        e instanceof Error && e.name === "TimeoutError"
          ? `timed out after ${this.timeoutMs} ms`
          : errMessage(e);
      throw new MciasError(`cannot reach mcias at ${this.base}: ${why}`);
    }
    const text = await res.text().catch(() => "");
    let body: unknown;
    try {
      body = text ? JSON.parse(text) : undefined;
    } catch {
      body = undefined;
    }
    return { status: res.status, body };
  }
}

export interface CachedValidatorOptions {
  /** Positive-result lifetime; default 30 000 (§5.2). */
  ttlMs?: number;
  /** Lifetime of an "invalid token" verdict; capped at 5000, 0 = not cached. Default 5000. */
  negativeTtlMs?: number;
  now?: () => number;
  /** Bound on cached entries; expired ones are swept first. Default 10 000. */
  maxEntries?: number;
}

interface CacheEntry {
  until: number;
  identity?: Identity;
  error?: AuthError;
}

/**
 * Caches validations keyed by the SHA-256 hex of the token — never the token
 * itself, so a heap dump or debug print of the cache leaks no credentials.
 * Concurrent validations of one token share one in-flight request. Only
 * AuthError verdicts are cached negatively (briefly); an unreachable MCIAS is
 * never cached, so it is retried on the next call.
 */
export class CachedValidator implements TokenValidator {
  private readonly cache = new Map<string, CacheEntry>();
  private readonly inflight = new Map<string, Promise<Identity>>();
  private readonly ttlMs: number;
  private readonly negativeTtlMs: number;
  private readonly now: () => number;
  private readonly maxEntries: number;

  constructor(
    private readonly inner: TokenValidator,
    opts: CachedValidatorOptions = {},
  ) {
    this.ttlMs = opts.ttlMs ?? 30_000;
    this.negativeTtlMs = Math.min(Math.max(opts.negativeTtlMs ?? 5000, 0), 5000);
    this.now = opts.now ?? Date.now;
    this.maxEntries = opts.maxEntries ?? 10_000;
  }

  validate(token: string): Promise<Identity> {
    if (!token) return Promise.reject(new AuthError("unauthenticated", "missing token"));
    const key = createHash("sha256").update(token, "utf8").digest("hex");
    const hit = this.cache.get(key);
    if (hit && hit.until > this.now()) {
      if (hit.identity) return Promise.resolve(copy(hit.identity));
      return Promise.reject(
        new AuthError(hit.error?.code ?? "unauthenticated", hit.error?.message ?? "invalid token"),
      );
    }
    if (hit) this.cache.delete(key);
    const pending = this.inflight.get(key);
    if (pending) return pending.then(copy);

    const p = this.inner.validate(token).then(
      (identity) => {
        let until = this.now() + this.ttlMs;
        const exp = identity.expiresAt ? Date.parse(identity.expiresAt) : Number.NaN;
        if (!Number.isNaN(exp)) until = Math.min(until, exp); // never outlive the token
        this.store(key, { until, identity: copy(identity) });
        return identity;
      },
      (err: unknown) => {
        if (err instanceof AuthError && this.negativeTtlMs > 0) {
          this.store(key, { until: this.now() + this.negativeTtlMs, error: err });
        }
        throw err;
      },
    );
    this.inflight.set(key, p);
    const clear = () => this.inflight.delete(key);
    p.then(clear, clear);
    return p.then(copy);
  }

  /** Cache keys (SHA-256 hex); for tests and diagnostics. */
  cacheKeys(): string[] {
    return [...this.cache.keys()];
  }

  clear(): void {
    this.cache.clear();
  }

  private store(key: string, entry: CacheEntry): void {
    if (this.cache.size >= this.maxEntries) {
      const now = this.now();
      for (const [k, e] of this.cache) if (e.until <= now) this.cache.delete(k);
      // Still full: drop the oldest insertions (Map keeps insertion order).
      for (const k of this.cache.keys()) {
        if (this.cache.size < this.maxEntries) break;
        this.cache.delete(k);
      }
    }
    this.cache.set(key, entry);
  }
}

function copy(id: Identity): Identity {
  return { ...id, roles: [...id.roles] };
}

function field(body: unknown, name: string): unknown {
  return body !== null && typeof body === "object" ? (body as Record<string, unknown>)[name] : undefined;
}

function errorText(body: unknown, status: number): string {
  const e = field(body, "error");
  return typeof e === "string" && e !== "" ? e : `HTTP ${status}`;
}

// MCIAS calls machine accounts "system" or "service"; anything else is a human.
function toAccountType(v: unknown): AccountType {
  return v === "system" || v === "service" ? "system" : "human";
}

function errMessage(e: unknown): string {
  if (e instanceof Error) {
    const code = (e as { code?: unknown }).code;
    return typeof code === "string" && !e.message.includes(code) ? `${e.message} (${code})` : e.message;
  }
  return String(e);
}
