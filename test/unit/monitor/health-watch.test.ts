// The health watch's scheduling and state machine with an injected clock: due times follow each
// component's own interval, at most `concurrency` checks run at once, `retries` counted failures
// (outside start_period) make a component unhealthy, transitions are reported once, busy services
// are skipped, a hung check is given up. The cooldown part runs through a real Monitor over a
// real sqlite registry (its raise() is the alert path the agent wires), and the flap count of
// that registry ignores the health events the watch writes.
import { afterAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pino from "pino";
import type { HealthDef } from "../../../src/config/service.ts";
import type { Alert } from "../../../src/monitor/alert.ts";
import {
  type CheckOutcome,
  type HealthTransition,
  HealthWatch,
  type HealthWatchOptions,
  type WatchTarget,
} from "../../../src/monitor/health-watch.ts";
import { flapCount, Monitor } from "../../../src/monitor/monitor.ts";
import { openRegistry } from "../../../src/registry/index.ts";

const dir = mkdtempSync(join(tmpdir(), "mcp-health-watch-unit-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const logger = pino({ level: "silent" });

const health = (over: Partial<HealthDef> = {}): HealthDef => ({
  type: "http",
  port: 80,
  path: "/",
  intervalMs: 1_000,
  timeoutMs: 500,
  retries: 3,
  startPeriodMs: 0,
  ...over,
});

const target = (
  component: string,
  over: Partial<HealthDef> = {},
  startedAt: number | null = null,
): WatchTarget => ({
  service: "svc",
  component,
  health: health(over),
  startedAt,
});

/** A clock the test moves by hand. */
function clock(start = 1_000_000) {
  let t = start;
  return {
    now: () => t,
    advance: (ms: number) => {
      t += ms;
    },
  };
}

/** A watch whose checks answer from `verdict` (per component) and whose effects are recorded. */
function setup(
  targets: () => WatchTarget[],
  verdict: (t: WatchTarget) => CheckOutcome | Promise<CheckOutcome>,
  extra: Partial<HealthWatchOptions<WatchTarget>> = {},
) {
  const c = clock();
  const checks: { component: string; at: number }[] = [];
  const transitions: HealthTransition[] = [];
  const alerts: Alert[] = [];
  const watch = new HealthWatch({
    targets,
    check: async (t) => {
      checks.push({ component: t.component, at: c.now() });
      return verdict(t);
    },
    record: (tr) => void transitions.push(tr),
    alert: async (a) => void alerts.push(a),
    logger,
    now: c.now,
    ...extra,
  });
  return { c, watch, checks, transitions, alerts };
}

/** A check result the test releases by hand. */
function deferred() {
  let resolve!: (r: CheckOutcome) => void;
  const promise = new Promise<CheckOutcome>((r) => {
    resolve = r;
  });
  return { promise, resolve };
}

const ok: CheckOutcome = { healthy: true, detail: "http GET http://127.0.0.1:80/ answered 200" };
const bad: CheckOutcome = { healthy: false, detail: "http GET http://127.0.0.1:80/ answered 404" };

describe("scheduling", () => {
  test("each component is checked at its own interval, not on every sweep", async () => {
    const ts = [target("fast", { intervalMs: 1_000 }), target("slow", { intervalMs: 3_000 })];
    const { c, watch, checks } = setup(
      () => ts,
      () => ok,
    );
    const t0 = c.now();
    // Sweep every 250 ms of fake time for 6.5 s.
    for (let i = 0; i <= 26; i++) {
      watch.sweep();
      await watch.settle();
      c.advance(250);
    }
    const at = (name: string) => checks.filter((x) => x.component === name).map((x) => x.at - t0);
    expect(at("fast")).toEqual([0, 1_000, 2_000, 3_000, 4_000, 5_000, 6_000]);
    expect(at("slow")).toEqual([0, 3_000, 6_000]);
    expect(watch.stats.checks).toBe(10);
  });

  test("a check slower than its interval is never started twice, and leaves no backlog", async () => {
    let pending = deferred();
    const { c, watch, checks } = setup(
      () => [target("api", { intervalMs: 1_000, timeoutMs: 60_000 })],
      () => pending.promise,
    );
    expect(watch.sweep()).toBe(1);
    c.advance(5_000);
    expect(watch.sweep()).toBe(0); // still in flight
    expect(checks).toHaveLength(1);
    const first = pending;
    pending = deferred();
    first.resolve(ok);
    await Bun.sleep(0);
    // It finished 5 s late: the next one starts right away (the finishing check sweeps), once.
    expect(checks).toHaveLength(2);
    pending.resolve(ok);
    await watch.settle();
    expect(watch.sweep()).toBe(0);
    c.advance(1_000);
    expect(watch.sweep()).toBe(1);
    await watch.settle();
  });

  test("at most `concurrency` checks run at once; a finishing one frees a slot for the next due", async () => {
    const gates = new Map<string, ReturnType<typeof deferred>>();
    const ts = Array.from({ length: 10 }, (_, i) => target(`c${i}`, { timeoutMs: 60_000 }));
    const { watch, checks } = setup(
      () => ts,
      (t) => {
        const d = deferred();
        gates.set(t.component, d);
        return d.promise;
      },
      { concurrency: 4 },
    );
    expect(watch.sweep()).toBe(4);
    expect(watch.inFlight).toBe(4);
    expect(watch.sweep()).toBe(0); // all due, no slot free
    gates.get("c0")?.resolve(ok);
    await Bun.sleep(0);
    expect(watch.inFlight).toBe(4);
    expect(checks).toHaveLength(5);
    // Release everything as it starts; the bound holds to the end.
    for (let i = 0; i < 50 && checks.length < 10; i++) {
      for (const d of gates.values()) d.resolve(ok);
      await Bun.sleep(0);
    }
    for (const d of gates.values()) d.resolve(ok);
    await watch.settle();
    expect(new Set(checks.map((x) => x.component)).size).toBe(10);
    expect(watch.stats.peakConcurrency).toBe(4);
    expect(watch.inFlight).toBe(0);
  });

  test("a busy service (deploy under way) is skipped for an interval, then checked again", async () => {
    let busy = true;
    const { c, watch, checks } = setup(
      () => [target("api")],
      () => ok,
      { busy: () => busy },
    );
    expect(watch.sweep()).toBe(0);
    busy = false;
    c.advance(500);
    expect(watch.sweep()).toBe(0); // skipped this round: next look one interval later
    c.advance(500);
    expect(watch.sweep()).toBe(1);
    await watch.settle();
    expect(checks).toHaveLength(1);
  });

  test("a check that ignores its timeout is given up as a failure", async () => {
    const { watch, transitions } = setup(
      () => [target("api", { timeoutMs: 20, retries: 1 })],
      () => new Promise<CheckOutcome>(() => {}),
    );
    const t0 = performance.now();
    watch.sweep();
    await watch.settle();
    expect(performance.now() - t0).toBeLessThan(2_000);
    expect(watch.stats.timeouts).toBe(1);
    expect(transitions).toEqual([
      expect.objectContaining({
        prev: "unknown",
        next: "unhealthy",
        detail: "http check gave no answer within 20 ms",
      }),
    ]);
  });

  test("a component no longer listed is forgotten", async () => {
    let ts = [target("api", { retries: 1 })];
    const { c, watch } = setup(
      () => ts,
      () => bad,
    );
    watch.sweep();
    await watch.settle();
    expect(watch.stateOf("svc", "api")).toBe("unhealthy");
    ts = [];
    c.advance(1_000);
    watch.sweep();
    expect(watch.stateOf("svc", "api")).toBe("unknown");
  });
});

describe("state machine", () => {
  /** Runs one check round per answer, one interval apart. */
  async function rounds(s: ReturnType<typeof setup>, n: number): Promise<void> {
    for (let i = 0; i < n; i++) {
      s.watch.sweep();
      await s.watch.settle();
      s.c.advance(1_000);
    }
  }

  test("unhealthy after `retries` consecutive failures: one transition, one alert; healthy again on a success", async () => {
    const answers = [ok, bad, bad, ok, bad, bad, bad, bad, bad, ok];
    let i = 0;
    const s = setup(
      () => [target("api", { retries: 3 })],
      () => answers[i++]!,
    );
    await rounds(s, 3); // ok (baseline), bad, bad
    expect(s.watch.stateOf("svc", "api")).toBe("healthy");
    await rounds(s, 1); // ok resets the count
    await rounds(s, 2); // bad, bad
    expect(s.transitions).toEqual([]);
    await rounds(s, 1); // third bad in a row
    expect(s.watch.stateOf("svc", "api")).toBe("unhealthy");
    expect(s.transitions).toEqual([
      {
        service: "svc",
        component: "api",
        prev: "healthy",
        next: "unhealthy",
        detail: bad.detail,
        failures: 3,
      },
    ]);
    expect(s.alerts).toEqual([
      {
        type: "unhealthy",
        service: "svc",
        component: "api",
        desired: "running",
        observed: "unhealthy",
        prev: "healthy",
        transitions: 3,
        detail: bad.detail,
      },
    ]);
    await rounds(s, 2); // staying unhealthy is no news
    expect(s.transitions).toHaveLength(1);
    expect(s.alerts).toHaveLength(1);
    await rounds(s, 1);
    expect(s.watch.stateOf("svc", "api")).toBe("healthy");
    expect(s.transitions.map((t) => `${t.prev}->${t.next}`)).toEqual([
      "healthy->unhealthy",
      "unhealthy->healthy",
    ]);
    expect(s.alerts).toHaveLength(1);
  });

  test("a component failing from its first check is reported unknown -> unhealthy", async () => {
    const s = setup(
      () => [target("api", { retries: 2 })],
      () => bad,
    );
    await rounds(s, 2);
    expect(s.transitions.map((t) => `${t.prev}->${t.next}`)).toEqual(["unknown->unhealthy"]);
    expect(s.alerts[0]).toMatchObject({ prev: "unknown", observed: "unhealthy" });
  });

  test("failures within start_period do not count; a new container starts its count over", async () => {
    const c0 = 1_000_000;
    let started = c0;
    const s = setup(
      () => [target("api", { retries: 2, startPeriodMs: 3_000 }, started)],
      () => bad,
    );
    await rounds(s, 3); // t = 0, 1, 2 s after start: not counted
    expect(s.watch.stateOf("svc", "api")).toBe("unknown");
    await rounds(s, 1); // 3 s: first counted failure
    expect(s.transitions).toEqual([]);
    started = s.c.now(); // replaced container: its own start period again
    await rounds(s, 3);
    expect(s.transitions).toEqual([]);
    await rounds(s, 2);
    expect(s.transitions.map((t) => t.next)).toEqual(["unhealthy"]);
  });

  test("a check that throws is a failure with its message", async () => {
    const s = setup(
      () => [target("api", { type: "exec", cmd: ["false"], retries: 1 })],
      () => {
        throw new Error("container not found");
      },
    );
    await rounds(s, 1);
    expect(s.transitions[0]?.detail).toBe("exec check failed: container not found");
  });

  test("a stopped watch reports nothing more", async () => {
    const d = deferred();
    const s = setup(
      () => [target("api", { retries: 1, timeoutMs: 60_000 })],
      () => d.promise,
    );
    s.watch.sweep();
    const stopping = s.watch.stop();
    d.resolve(bad);
    await stopping;
    expect(s.transitions).toEqual([]);
    expect(s.watch.sweep()).toBe(0);
  });
});

describe("through a real Monitor and registry", () => {
  test("one unhealthy alert per cooldown (shared with drift/flap alerts); health events are no flaps", async () => {
    const reg = openRegistry(join(dir, "cooldown.db"));
    const c = clock();
    const COOLDOWN = 10_000;
    const monitor = new Monitor({
      intervalMs: 60_000,
      cooldownMs: COOLDOWN,
      flapThreshold: 3,
      flapWindowMs: 600_000,
      retentionMs: 86_400_000,
      store: reg,
      reconcile: async () => ({ services: reg.listServices(), transitions: [] }),
      sink: { node: "n", command: [], timeoutMs: 1_000, logger },
      logger,
      now: c.now,
    });
    let healthy = true;
    const sent: (Alert | null)[] = [];
    const watch = new HealthWatch({
      targets: () => [target("api", { retries: 1, intervalMs: 1_000 })],
      check: async () => (healthy ? ok : bad),
      record: (t) =>
        void reg.insertEvent({
          service: t.service,
          component: t.component,
          prevState: t.prev,
          newState: t.next,
        }),
      alert: async (a) => sent.push((await monitor.raise(a)) === null ? null : a),
      logger,
      now: c.now,
    });
    const round = async (h: boolean) => {
      healthy = h;
      watch.sweep();
      await watch.settle();
      c.advance(1_000);
    };
    const t0 = c.now();
    await round(true);
    await round(false); // alert
    await round(true);
    await round(false); // unhealthy again 2 s later: inside the cooldown
    for (let i = 0; i < 3; i++) await round(false);
    expect(sent.map((a) => a !== null)).toEqual([true, false]);
    expect(monitor.stats.alerts).toBe(1);
    while (c.now() < t0 + 1_000 + COOLDOWN) await round(true);
    await round(false); // after the cooldown: a new alert
    expect(sent.map((a) => a !== null)).toEqual([true, false, true]);
    expect(sent[2]).toMatchObject({ type: "unhealthy", prev: "healthy", observed: "unhealthy" });

    const events = reg
      .recentEvents({ service: "svc", limit: 20 })
      .map((e) => `${e.prevState}->${e.newState}`);
    expect(events).toEqual([
      "healthy->unhealthy",
      "unhealthy->healthy",
      "healthy->unhealthy",
      "unhealthy->healthy",
      "healthy->unhealthy",
    ]);
    // Five health events in the window, none of them a container state change.
    expect(flapCount(reg, "svc", "api", new Date(0))).toBe(0);
    reg.insertEvent({ service: "svc", component: "api", prevState: "running", newState: "exited" });
    expect(flapCount(reg, "svc", "api", new Date(0))).toBe(1);
    reg.close();
  });
});
