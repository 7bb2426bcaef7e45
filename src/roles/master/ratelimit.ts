// Per-identity rate limits of the agent RPCs (architecture-v2 "Rate Limiting"): Register at most
// once per register_interval, Heartbeat at most once per heartbeat_min_interval, per identity.
// A token bucket of capacity 1: only ACCEPTED calls spend the token, so a flooding agent gets its
// next call through as soon as the interval since its last accepted one has passed. Keys are
// bounded by the allowlist (the policy rejects every other caller before a handler runs).
import { resourceExhausted } from "../../rpc/errors.ts";

export class RateLimiter {
  private readonly last = new Map<string, number>();

  constructor(
    /** Minimum time between two accepted calls of one key, in ms. */
    readonly intervalMs: number,
    private readonly now: () => number = Date.now,
  ) {}

  /** Spends the key's token, or returns how many ms remain until one is available. */
  tryTake(key: string): { ok: true } | { ok: false; retryAfterMs: number } {
    const t = this.now();
    const prev = this.last.get(key);
    if (prev !== undefined && t - prev < this.intervalMs) {
      return { ok: false, retryAfterMs: this.intervalMs - (t - prev) };
    }
    this.last.set(key, t);
    return { ok: true };
  }

  /** tryTake, throwing RESOURCE_EXHAUSTED ("<what> rate limit: ...") when over the limit. */
  take(key: string, what: string): void {
    const r = this.tryTake(key);
    if (!r.ok) {
      throw resourceExhausted(
        `${what} rate limit for ${key}: at most 1 per ${fmt(this.intervalMs)}, retry in ${fmt(r.retryAfterMs)}`,
      );
    }
  }
}

function fmt(ms: number): string {
  return ms >= 1000 ? `${Math.ceil(ms / 100) / 10}s` : `${Math.ceil(ms)}ms`;
}

/** The two limits of the master, built from [registration]. */
export interface AgentRateLimits {
  register: RateLimiter;
  heartbeat: RateLimiter;
}

export function agentRateLimits(
  cfg: { registration: { register_interval: number; heartbeat_min_interval: number } },
  now: () => number = Date.now,
): AgentRateLimits {
  return {
    register: new RateLimiter(cfg.registration.register_interval, now),
    heartbeat: new RateLimiter(cfg.registration.heartbeat_min_interval, now),
  };
}
