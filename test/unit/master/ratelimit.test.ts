// Per-identity rate limits with an injected clock: Register 1/min, Heartbeat 1/10 s by default.
import { describe, expect, test } from "bun:test";
import { status } from "@grpc/grpc-js";
import { agentRateLimits, RateLimiter } from "../../../src/roles/master/ratelimit.ts";
import { RpcError } from "../../../src/rpc/errors.ts";

function clock(start = 1_000_000) {
  let t = start;
  return {
    now: () => t,
    advance: (ms: number) => {
      t += ms;
    },
  };
}

describe("RateLimiter", () => {
  test("one call per interval per key; rejected calls do not spend the token", () => {
    const c = clock();
    const rl = new RateLimiter(10_000, c.now);
    expect(rl.tryTake("agent-a")).toEqual({ ok: true });
    expect(rl.tryTake("agent-a")).toEqual({ ok: false, retryAfterMs: 10_000 });
    c.advance(9_999);
    expect(rl.tryTake("agent-a")).toEqual({ ok: false, retryAfterMs: 1 });
    // Another identity has its own budget.
    expect(rl.tryTake("agent-b")).toEqual({ ok: true });
    c.advance(1);
    expect(rl.tryTake("agent-a")).toEqual({ ok: true });
  });

  test("a flood of N calls within one interval lets exactly one through", () => {
    const c = clock();
    const rl = new RateLimiter(10_000, c.now);
    let ok = 0;
    for (let i = 0; i < 100; i++) {
      if (rl.tryTake("agent-a").ok) ok++;
      c.advance(50);
    }
    expect(ok).toBe(1);
  });

  test("take throws RESOURCE_EXHAUSTED with one readable line", () => {
    const c = clock();
    const rl = new RateLimiter(60_000, c.now);
    rl.take("agent-a", "Register");
    c.advance(15_000);
    let err: unknown = null;
    try {
      rl.take("agent-a", "Register");
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(RpcError);
    expect((err as RpcError).code).toBe(status.RESOURCE_EXHAUSTED);
    expect((err as RpcError).message).toBe(
      "Register rate limit for agent-a: at most 1 per 60s, retry in 45s",
    );
  });

  test("agentRateLimits reads [registration] intervals", () => {
    const c = clock();
    const l = agentRateLimits(
      { registration: { register_interval: 60_000, heartbeat_min_interval: 10_000 } },
      c.now,
    );
    expect(l.register.intervalMs).toBe(60_000);
    expect(l.heartbeat.intervalMs).toBe(10_000);
    expect(l.register.tryTake("agent-a").ok).toBe(true);
    // Separate limiters: a Register does not spend the heartbeat budget.
    expect(l.heartbeat.tryTake("agent-a").ok).toBe(true);
  });
});
