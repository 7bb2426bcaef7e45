// The deploy health gate's timing rules with a fake clock: success on the first healthy check,
// start_period failures not counted, `retries` consecutive failures, exit detection, the deadline.
import { describe, expect, test } from "bun:test";
import type { HealthDef } from "../../../src/config/service.ts";
import type { HealthResult } from "../../../src/health/result.ts";
import {
  GATE_SLACK_MS,
  type GateClock,
  gateDeadlineMs,
  runHealthGate,
} from "../../../src/roles/agent/health-gate.ts";

function fakeClock(): GateClock & { t: number; sleeps: number[] } {
  const c = {
    t: 0,
    sleeps: [] as number[],
    now: () => c.t,
    sleep: async (ms: number) => {
      c.sleeps.push(ms);
      c.t += ms;
    },
  };
  return c;
}

const health = (o: Partial<HealthDef> = {}): HealthDef => ({
  type: "tcp",
  port: 80,
  intervalMs: 1000,
  timeoutMs: 500,
  retries: 3,
  startPeriodMs: 0,
  ...o,
});

/** A check answering from a script (true = healthy), taking `costMs` of fake time each. */
function scripted(clock: { t: number }, answers: boolean[], costMs = 10) {
  const budgets: number[] = [];
  let i = 0;
  const check = async (budget: number): Promise<HealthResult> => {
    budgets.push(budget);
    clock.t += costMs;
    const healthy = answers[Math.min(i++, answers.length - 1)] ?? false;
    return { healthy, detail: healthy ? "tcp accepted" : `tcp refused #${i}`, ms: costMs };
  };
  return { check, budgets };
}

const running = async () => null;

describe("runHealthGate", () => {
  test("passes on the first healthy check, after the failures before it", async () => {
    const clock = fakeClock();
    const { check } = scripted(clock, [false, false, true]);
    const out = await runHealthGate(health(), check, running, clock);
    expect(out).toMatchObject({ healthy: true, cause: "healthy", checks: 3 });
    expect(out.detail).toBe("healthy after 3 checks (tcp accepted)");
    expect(clock.sleeps).toEqual([1000, 1000]);
  });

  test("fails after `retries` consecutive failures", async () => {
    const clock = fakeClock();
    const { check, budgets } = scripted(clock, [false]);
    const out = await runHealthGate(health({ retries: 2 }), check, running, clock);
    expect(out).toMatchObject({ healthy: false, cause: "retries", checks: 2 });
    expect(out.detail).toBe("unhealthy: tcp refused #2 (2 consecutive failures)");
    expect(budgets).toEqual([500, 500]);
    expect(out.ms).toBe(1020);
  });

  test("failures during start_period do not count", async () => {
    const clock = fakeClock();
    const { check } = scripted(clock, [false]);
    const out = await runHealthGate(health({ retries: 2, startPeriodMs: 2500 }), check, running, clock);
    // checks at t=0, ~1010, ~2020 are inside the start period; ~3030 and ~4040 count.
    expect(out).toMatchObject({ healthy: false, cause: "retries", checks: 5 });
    expect(out.ms).toBeGreaterThanOrEqual(4000);
    expect(out.ms).toBeLessThanOrEqual(gateDeadlineMs(health({ retries: 2, startPeriodMs: 2500 })));
  });

  test("a container that exits fails the gate at the next look, without waiting for retries", async () => {
    const clock = fakeClock();
    const { check } = scripted(clock, [false]);
    let looks = 0;
    const watch = async () => (++looks >= 2 ? "container exited (code 1)" : null);
    const out = await runHealthGate(health({ retries: 10, intervalMs: 5000 }), check, watch, clock);
    expect(out).toMatchObject({ healthy: false, cause: "exited", checks: 1 });
    expect(out.detail).toBe("container exited (code 1) after 1 check (last: tcp refused #1)");
    expect(clock.sleeps).toEqual([]);
  });

  test("an exit seen before any check", async () => {
    const clock = fakeClock();
    const { check } = scripted(clock, [true]);
    const out = await runHealthGate(health(), check, async () => "container removed", clock);
    expect(out).toMatchObject({
      healthy: false,
      cause: "exited",
      checks: 0,
      detail: "container removed after 0 checks",
    });
  });

  test("slow checks hit the overall deadline; the last check's budget never passes it", async () => {
    const clock = fakeClock();
    const h = health({ retries: 3, intervalMs: 100, timeoutMs: 200, startPeriodMs: 60_000 });
    const { check, budgets } = scripted(clock, [false], 5000);
    const out = await runHealthGate(h, check, running, clock);
    expect(out.cause).toBe("deadline");
    expect(out.healthy).toBe(false);
    expect(budgets.every((b) => b <= 200)).toBe(true);
    expect(gateDeadlineMs(h)).toBe(60_000 + 3 * 300 + GATE_SLACK_MS);
    // Bounded: it ends within one check's cost of the deadline.
    expect(out.ms).toBeLessThanOrEqual(gateDeadlineMs(h) + 5000);
  });
});
