// The HTTPS plumbing the Metacrypt and MCNS adapters share: base URL checks,
// the CA file trusted for the service (read once, retried if it was missing),
// bearer tokens from a TokenSource (one retry after a 401 when the provider
// can refresh), timeouts, and every failure as a one-line IntegrationError.

import { readFile } from "node:fs/promises";
import { resolveToken, type TokenSource } from "./token.ts";
import { IntegrationError } from "./types.ts";

type Name = IntegrationError["integration"];

export interface HttpOptions {
  serverUrl: string;
  /** PEM file to trust for the server; absent/empty = system roots. */
  caCertPath?: string;
  token: TokenSource;
  /** Per request; default 10 000. */
  timeoutMs?: number;
  /** Allow an http:// server_url (the section's `insecure_http = true`, for tests). */
  insecureHttp?: boolean;
}

export interface HttpResult {
  status: number;
  /** Parsed JSON, or undefined when the body is empty or not JSON. */
  body: unknown;
  text: string;
}

export class ServiceHttp {
  readonly base: string;
  private readonly timeoutMs: number;
  private ca: Promise<string | undefined> | undefined;

  constructor(
    private readonly name: Name,
    private readonly opts: HttpOptions,
  ) {
    let u: URL;
    try {
      u = new URL(opts.serverUrl);
    } catch {
      throw new IntegrationError(name, `server_url is not a URL: ${JSON.stringify(opts.serverUrl)}`);
    }
    // http:// would send the bearer token in clear: only with an explicit insecure_http.
    if (u.protocol !== "https:" && !(u.protocol === "http:" && opts.insecureHttp === true)) {
      throw new IntegrationError(
        name,
        `server_url must be https:// (bearer tokens are not sent in clear; insecure_http = true allows http:// for tests), got ${u.protocol}`,
      );
    }
    this.base = opts.serverUrl.replace(/\/+$/, "");
    this.timeoutMs = opts.timeoutMs ?? 10_000;
  }

  /** Sends one request; `auth: false` for the public endpoints (CA download). */
  async request(
    method: "GET" | "POST" | "PUT" | "DELETE",
    path: string,
    o: { body?: unknown; auth?: boolean } = {},
  ): Promise<HttpResult> {
    const auth = o.auth ?? true;
    let res = await this.once(method, path, o.body, auth);
    const refresh = typeof this.opts.token === "function" ? this.opts.token.invalidate : undefined;
    if (res.status === 401 && auth && refresh) {
      // The token may have been rotated or expired since we cached it.
      refresh();
      res = await this.once(method, path, o.body, auth);
    }
    return res;
  }

  /** The one-line error for a non-2xx answer: "<status>: <error field or body>". */
  fail(what: string, r: HttpResult): IntegrationError {
    const field =
      r.body !== null && typeof r.body === "object" ? (r.body as Record<string, unknown>).error : undefined;
    const detail =
      typeof field === "string" && field !== ""
        ? field
        : r.text.trim().split("\n")[0]?.slice(0, 200) || "no error message";
    return new IntegrationError(this.name, `${what}: ${r.status}: ${detail}`, r.status);
  }

  private async once(method: string, path: string, body: unknown, auth: boolean): Promise<HttpResult> {
    const ca = await this.caPem();
    const headers: Record<string, string> = { accept: "application/json" };
    if (body !== undefined) headers["content-type"] = "application/json";
    if (auth) headers.authorization = `Bearer ${await resolveToken(this.opts.token, this.name)}`;
    let res: Response;
    try {
      res = await fetch(this.base + path, {
        method,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
        signal: AbortSignal.timeout(this.timeoutMs),
        redirect: "error",
        ...(ca ? { tls: { ca } } : {}),
      });
    } catch (e) {
      const why =
        e instanceof Error && e.name === "TimeoutError"
          ? `timed out after ${this.timeoutMs} ms`
          : e instanceof Error
            ? e.message
            : String(e);
      throw new IntegrationError(this.name, `cannot reach ${this.base}: ${why}`);
    }
    const text = await res.text().catch(() => "");
    let parsed: unknown;
    try {
      parsed = text ? JSON.parse(text) : undefined;
    } catch {
      parsed = undefined;
    }
    return { status: res.status, body: parsed, text };
  }

  private caPem(): Promise<string | undefined> {
    const path = this.opts.caCertPath;
    if (!path) return Promise.resolve(undefined);
    this.ca ??= readFile(path, "utf8").catch((e: NodeJS.ErrnoException) => {
      this.ca = undefined; // retry next time: the file may appear later
      throw new IntegrationError(this.name, `cannot read ca_cert ${path}: ${e.code ?? e.message}`);
    });
    return this.ca;
  }
}

export function isObject(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === "object" && !Array.isArray(v);
}
