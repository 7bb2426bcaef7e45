// Bearer tokens for the agent's own calls to Metacrypt and MCNS (spec §8:
// "token file per integration"). The adapters take a TokenSource: a fixed
// string, or a provider the agent role builds — fileToken() here, or a
// provider backed by an MCIAS system-account login (refreshingToken(), with
// the login function passed in by the role: integrations never import auth).
// Token values never appear in error messages.

import { readFile, stat } from "node:fs/promises";
import { IntegrationError } from "./types.ts";

/** Returns the current token. invalidate() (optional) drops any cached value after a 401. */
export interface TokenProvider {
  (): Promise<string>;
  invalidate?: () => void;
}

export type TokenSource = string | TokenProvider;

/** A one-line problem with a token source (missing/empty file, failed login). */
export class TokenError extends Error {
  override name = "TokenError";
}

/**
 * A provider that reads `path` and re-reads it whenever its mtime or size
 * changes, so a token rotated on disk is picked up without a restart.
 */
export function fileToken(path: string): TokenProvider {
  let cached: { mtimeMs: number; size: number; token: string } | undefined;
  const provider: TokenProvider = async () => {
    let st: Awaited<ReturnType<typeof stat>>;
    try {
      st = await stat(path);
    } catch (e) {
      cached = undefined;
      const code = (e as NodeJS.ErrnoException).code;
      throw new TokenError(
        code === "ENOENT" ? `token file ${path} does not exist` : `cannot read token file ${path}: ${code}`,
      );
    }
    if (cached && cached.mtimeMs === st.mtimeMs && cached.size === st.size) return cached.token;
    let text: string;
    try {
      text = await readFile(path, "utf8");
    } catch (e) {
      cached = undefined;
      throw new TokenError(`cannot read token file ${path}: ${(e as NodeJS.ErrnoException).code}`);
    }
    const token = text.trim();
    if (token === "") throw new TokenError(`token file ${path} is empty`);
    if (/\s/.test(token)) throw new TokenError(`token file ${path} holds more than one line`);
    cached = { mtimeMs: st.mtimeMs, size: st.size, token };
    return token;
  };
  provider.invalidate = () => {
    cached = undefined;
  };
  return provider;
}

/**
 * A provider over a login function (e.g. the role's
 * `() => mcias.login(user, password)`): logs in on first use, reuses the token
 * until `refreshBeforeMs` before its expiry, shares one login between
 * concurrent callers, and logs in again after invalidate().
 */
export function refreshingToken(
  login: () => Promise<{ token: string; expiresAt?: string }>,
  opts: { refreshBeforeMs?: number; now?: () => number } = {},
): TokenProvider {
  const margin = opts.refreshBeforeMs ?? 60_000;
  const now = opts.now ?? Date.now;
  let current: { token: string; until: number } | undefined;
  let pending: Promise<string> | undefined;
  const provider: TokenProvider = () => {
    if (current && current.until > now()) return Promise.resolve(current.token);
    pending ??= login()
      .then(
        ({ token, expiresAt }) => {
          if (!token) throw new TokenError("login returned no token");
          const exp = expiresAt ? Date.parse(expiresAt) : Number.NaN;
          // Unknown expiry: keep it until a 401 invalidates it.
          current = { token, until: Number.isNaN(exp) ? Number.POSITIVE_INFINITY : exp - margin };
          return token;
        },
        (e: unknown) => {
          throw new TokenError(`system account login failed: ${e instanceof Error ? e.message : String(e)}`);
        },
      )
      .finally(() => {
        pending = undefined;
      });
    return pending;
  };
  provider.invalidate = () => {
    current = undefined;
  };
  return provider;
}

/** Resolves a source to a token, as an IntegrationError naming the integration on failure. */
export async function resolveToken(
  source: TokenSource,
  integration: IntegrationError["integration"],
): Promise<string> {
  if (typeof source === "string") {
    if (source === "") throw new IntegrationError(integration, "no token configured");
    return source;
  }
  try {
    return await source();
  } catch (e) {
    if (e instanceof IntegrationError) throw e;
    throw new IntegrationError(integration, e instanceof Error ? e.message : String(e));
  }
}
