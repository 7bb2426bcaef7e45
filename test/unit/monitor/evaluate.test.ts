// Alert evaluation properties (fast-check): simulated tick sequences threaded through
// evaluate + recordAlerts the way the loop threads them.
import { describe, expect, test } from "bun:test";
import fc from "fast-check";
import type { Alert } from "../../../src/monitor/alert.ts";
import { componentKey, evaluate, recordAlerts, type Transition } from "../../../src/monitor/evaluate.ts";
import { type DesiredState, isDrift, type ObservedState } from "../../../src/registry/types.ts";

const SERVICES = ["a", "b"];
const COMPONENTS = ["x", "y", "z"];
const OBSERVED: ObservedState[] = ["running", "stopped", "exited", "removed", "unknown"];
const DESIRED: DesiredState[] = ["running", "stopped", "ignore"];

const transitionArb = fc
  .record({
    service: fc.constantFrom(...SERVICES),
    component: fc.constantFrom(...COMPONENTS),
    prev: fc.constantFrom(...OBSERVED),
    next: fc.constantFrom(...OBSERVED),
  })
  .filter((t) => t.prev !== t.next);

const tickArb = fc.record({
  gapMs: fc.integer({ min: 0, max: 5_000 }),
  transitions: fc.array(transitionArb, { maxLength: 6 }),
  counts: fc.array(fc.integer({ min: 0, max: 8 }), { minLength: 6, maxLength: 6 }),
});

const desiredArb = fc.array(fc.constantFrom(...DESIRED), { minLength: 6, maxLength: 6 });

interface Fired {
  at: number;
  alert: Alert;
  tick: Transition[];
}

/** Runs a sequence of ticks the way Monitor does; returns every alert with its tick time. */
function simulate(
  desiredStates: DesiredState[],
  ticks: { gapMs: number; transitions: Transition[]; counts: number[] }[],
  cooldownMs: number,
  flapThreshold: number,
): Fired[] {
  const desired = new Map<string, DesiredState>();
  SERVICES.forEach((s, i) => {
    COMPONENTS.forEach((c, j) => {
      desired.set(componentKey(s, c), desiredStates[i * COMPONENTS.length + j] ?? "running");
    });
  });
  let now = 1_000_000;
  let lastAlert = new Map<string, number>();
  const fired: Fired[] = [];
  for (const t of ticks) {
    now += t.gapMs;
    const flapCounts = new Map<string, number>();
    t.transitions.forEach((tr, i) => {
      flapCounts.set(componentKey(tr.service, tr.component), t.counts[i] ?? 0);
    });
    const { alerts } = evaluate({
      now,
      transitions: t.transitions,
      desired,
      flapCounts,
      lastAlert,
      cooldownMs,
      flapThreshold,
    });
    lastAlert = recordAlerts(lastAlert, alerts, now, cooldownMs);
    for (const alert of alerts) fired.push({ at: now, alert, tick: t.transitions });
  }
  return fired;
}

const params = fc.record({
  desired: desiredArb,
  ticks: fc.array(tickArb, { maxLength: 30 }),
  cooldownMs: fc.integer({ min: 0, max: 20_000 }),
  flapThreshold: fc.integer({ min: 1, max: 6 }),
});

describe("evaluate (properties)", () => {
  test("never two alerts for one component within its cooldown", () => {
    fc.assert(
      fc.property(params, (p) => {
        const fired = simulate(p.desired, p.ticks, p.cooldownMs, p.flapThreshold);
        const last = new Map<string, number>();
        for (const f of fired) {
          const key = componentKey(f.alert.service, f.alert.component);
          const prev = last.get(key);
          if (prev !== undefined) expect(f.at - prev).toBeGreaterThanOrEqual(p.cooldownMs);
          if (p.cooldownMs > 0) expect(f.at !== prev).toBe(true);
          last.set(key, f.at);
        }
      }),
      { numRuns: 2_000 },
    );
  });

  test("alerts only on a transition; drift only on the transition INTO drift", () => {
    fc.assert(
      fc.property(params, (p) => {
        for (const f of simulate(p.desired, p.ticks, p.cooldownMs, p.flapThreshold)) {
          const mine = f.tick.filter(
            (t) => t.service === f.alert.service && t.component === f.alert.component,
          );
          expect(mine.length).toBeGreaterThan(0);
          const d = f.alert.desired as DesiredState;
          if (f.alert.type === "drift") {
            expect(
              mine.some(
                (t) =>
                  t.next === f.alert.observed &&
                  t.next !== "unknown" &&
                  isDrift(d, t.next as ObservedState) &&
                  (t.prev === "unknown" || !isDrift(d, t.prev as ObservedState)),
              ),
            ).toBe(true);
            expect(f.alert.transitions).toBeLessThan(p.flapThreshold);
          } else {
            expect(f.alert.type).toBe("flapping");
            expect(f.alert.transitions).toBeGreaterThanOrEqual(p.flapThreshold);
          }
        }
      }),
      { numRuns: 2_000 },
    );
  });

  test("ignore never alerts", () => {
    fc.assert(
      fc.property(params, (p) => {
        const all = p.desired.map(() => "ignore" as DesiredState);
        expect(simulate(all, p.ticks, p.cooldownMs, p.flapThreshold)).toEqual([]);
        for (const f of simulate(p.desired, p.ticks, p.cooldownMs, p.flapThreshold)) {
          expect(f.alert.desired).not.toBe("ignore");
        }
      }),
      { numRuns: 1_000 },
    );
  });

  test("a transition into drift outside cooldown and below the flap threshold always fires", () => {
    fc.assert(
      fc.property(
        fc.constantFrom<DesiredState>("running", "stopped"),
        fc.constantFrom(...OBSERVED),
        fc.constantFrom(...OBSERVED),
        (desired, prev, next) => {
          fc.pre(prev !== next);
          const enters =
            next !== "unknown" && isDrift(desired, next) && (prev === "unknown" || !isDrift(desired, prev));
          const { alerts } = evaluate({
            now: 10_000,
            transitions: [{ service: "s", component: "c", prev, next }],
            desired: new Map([["s/c", desired]]),
            flapCounts: new Map([["s/c", 1]]),
            lastAlert: new Map([["s/c", 0]]),
            cooldownMs: 5_000,
            flapThreshold: 3,
          });
          expect(alerts.length).toBe(enters ? 1 : 0);
          if (enters)
            expect(alerts[0]).toEqual({
              type: "drift",
              service: "s",
              component: "c",
              desired,
              observed: next,
              prev,
              transitions: 1,
            });
        },
      ),
    );
  });
});

describe("evaluate (examples)", () => {
  const base = {
    now: 100_000,
    desired: new Map<string, DesiredState>([["svc/api", "running"]]),
    lastAlert: new Map<string, number>(),
    cooldownMs: 60_000,
    flapThreshold: 3,
  };

  test("running -> exited is drift; exited -> removed (still drifted) is not", () => {
    const crash = evaluate({
      ...base,
      transitions: [{ service: "svc", component: "api", prev: "running", next: "exited" }],
      flapCounts: new Map([["svc/api", 1]]),
    });
    expect(crash.alerts.map((a) => a.type)).toEqual(["drift"]);
    const gone = evaluate({
      ...base,
      transitions: [{ service: "svc", component: "api", prev: "exited", next: "removed" }],
      flapCounts: new Map([["svc/api", 2]]),
    });
    expect(gone.alerts).toEqual([]);
  });

  test("the threshold-th transition is a flap alert; inside cooldown it is suppressed, not lost silently", () => {
    const input = {
      ...base,
      transitions: [{ service: "svc", component: "api", prev: "exited", next: "running" }],
      flapCounts: new Map([["svc/api", 3]]),
    };
    const first = evaluate(input);
    expect(first.alerts).toEqual([
      {
        type: "flapping",
        service: "svc",
        component: "api",
        desired: "running",
        observed: "running",
        prev: "exited",
        transitions: 3,
      },
    ]);
    const again = evaluate({
      ...input,
      now: base.now + 1_000,
      lastAlert: recordAlerts(new Map(), first.alerts, base.now, base.cooldownMs),
    });
    expect(again.alerts).toEqual([]);
    expect(again.suppressed.map((a) => a.type)).toEqual(["flapping"]);
  });

  test("recordAlerts forgets entries whose cooldown is over", () => {
    const m = recordAlerts(
      new Map([
        ["old/x", 0],
        ["new/y", 95_000],
      ]),
      [],
      100_000,
      10_000,
    );
    expect([...m.keys()]).toEqual(["new/y"]);
  });
});
