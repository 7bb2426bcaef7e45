// Local tokens for embedded local mode (§3.5): no MCIAS, the agent config
// stores SHA-256 hashes of tokens and the CLI token file holds the plain
// token. Opt-in only; never a fallback when MCIAS is configured.

import { createHash, randomBytes, timingSafeEqual } from "node:crypto";
import { type AccountType, AuthError, type Identity, type TokenValidator } from "./identity.ts";

export const LOCAL_TOKEN_PREFIX = "mcpl_";

export interface LocalTokenEntry {
  name: string;
  role: "admin" | "user" | "guest";
  accountType: AccountType;
  /** Hex SHA-256 of the whole token (prefix included), see hashToken. */
  sha256: string;
  /** ISO 8601; absent = never expires. */
  expires?: string;
}

/** 32 random bytes, base64url, prefixed so a leaked token is recognisable. */
export function generateToken(): string {
  return LOCAL_TOKEN_PREFIX + randomBytes(32).toString("base64url");
}

export function hashToken(token: string): string {
  return createHash("sha256").update(token, "utf8").digest("hex");
}

interface Prepared {
  entry: LocalTokenEntry;
  hash: Buffer;
  expiresMs: number | undefined;
}

export class LocalTokenValidator implements TokenValidator {
  private readonly entries: Prepared[];
  private readonly now: () => number;

  constructor(entries: LocalTokenEntry[], opts: { now?: () => number } = {}) {
    this.now = opts.now ?? Date.now;
    this.entries = entries.map((entry) => {
      if (!/^[0-9a-f]{64}$/i.test(entry.sha256)) {
        throw new Error(`local token "${entry.name}": sha256 must be 64 hex characters`);
      }
      let expiresMs: number | undefined;
      if (entry.expires !== undefined) {
        expiresMs = Date.parse(entry.expires);
        if (Number.isNaN(expiresMs))
          throw new Error(`local token "${entry.name}": expires is not an ISO date`);
      }
      return { entry, hash: Buffer.from(entry.sha256.toLowerCase(), "hex"), expiresMs };
    });
  }

  async validate(token: string): Promise<Identity> {
    if (!token) throw new AuthError("unauthenticated", "missing token");
    const hash = Buffer.from(hashToken(token), "hex");
    // Compare against every entry (no early exit) in constant time per entry.
    let found: Prepared | undefined;
    for (const p of this.entries) {
      if (timingSafeEqual(p.hash, hash) && !found) found = p;
    }
    if (!found) throw new AuthError("unauthenticated", "invalid token");
    if (found.expiresMs !== undefined && this.now() >= found.expiresMs) {
      throw new AuthError("unauthenticated", "token expired");
    }
    const { entry } = found;
    const id: Identity = { name: entry.name, roles: [entry.role], accountType: entry.accountType };
    if (entry.expires !== undefined) id.expiresAt = entry.expires;
    return id;
  }
}
