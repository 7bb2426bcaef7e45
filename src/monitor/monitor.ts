// The monitor loop (reference "Monitor Loop"): every interval one tick = prune events past
// retention, reconcile (injected: one runtime listing, events per transition), evaluate alerts,
// run them. Ticks never overlap (a timer firing during a tick is skipped), a failing tick is
// logged and the next one retries, stop() waits for the running tick.
//
// Cooldown state lives in memory only: an agent restart forgets it, so at most one extra alert
// per component can follow a restart. That is the price of not writing on every alert.
import type { Logger } from "pino";
import type { DesiredState, EventRecord, ServiceRecord } from "../registry/types.ts";
import { isObservedState } from "../registry/types.ts";
import { type Alert, type AlertOutcome, type AlertSink, raiseAlert } from "./alert.ts";
import { componentKey, evaluate, recordAlerts, type Transition } from "./evaluate.ts";

/** The registry calls the loop needs (the Registry class satisfies it). */
export interface MonitorStore {
  recentEvents(q: { service: string; component: string; since: Date; limit: number }): EventRecord[];
  pruneEvents(olderThan: Date): number;
}

// Enough to see any sane flap threshold; counting stops there.
const FLAP_COUNT_CAP = 1_000;

/**
 * Transitions of one component in the flap window. The first observation (from "unknown", e.g.
 * right after a deploy records the component) is not a change of the container and not counted.
 * The events table also holds the health watch's healthy/unhealthy transitions (same service and
 * component, states outside the observed-state set): those are not container state changes
 * either, so only events between two observed states count.
 */
export function flapCount(store: MonitorStore, service: string, component: string, since: Date): number {
  return store
    .recentEvents({ service, component, since, limit: FLAP_COUNT_CAP })
    .filter((e) => e.prevState !== "unknown" && isObservedState(e.prevState) && isObservedState(e.newState))
    .length;
}

/** Something that runs beside the loop and starts and stops with it (the health watch). */
export interface MonitorCompanion {
  start(): void;
  stop(): Promise<void>;
}

export interface MonitorOptions {
  intervalMs: number;
  cooldownMs: number;
  flapThreshold: number;
  flapWindowMs: number;
  retentionMs: number;
  store: MonitorStore;
  /** One reconciliation: the services after it (desired states) and the transitions it recorded. */
  reconcile: () => Promise<{ services: ServiceRecord[]; transitions: Transition[] }>;
  sink: AlertSink;
  logger: Logger;
  /**
   * Last word before an alert runs, e.g. wait for an operation in progress on the service and
   * check the drift still holds (a deploy replaces a container: a tick in between sees `removed`).
   * false drops the alert without starting its cooldown.
   */
  confirm?: (alert: Alert) => Promise<boolean>;
  /** Aborting stops the timer (the agent's shutdown signal). */
  signal?: AbortSignal;
  now?: () => number;
  /** Started by start(), stopped (and awaited) by stop(). */
  companions?: readonly MonitorCompanion[];
}

export interface TickResult {
  pruned: number;
  transitions: number;
  alerts: Alert[];
  suppressed: Alert[];
  outcomes: AlertOutcome[];
}

export interface MonitorStats {
  ticks: number;
  skipped: number;
  errors: number;
  alerts: number;
}

export class Monitor {
  private readonly opts: MonitorOptions;
  private readonly now: () => number;
  private timer: ReturnType<typeof setInterval> | null = null;
  private running: Promise<unknown> | null = null;
  private lastAlert = new Map<string, number>();
  private readonly counters: MonitorStats = { ticks: 0, skipped: 0, errors: 0, alerts: 0 };

  constructor(opts: MonitorOptions) {
    this.opts = opts;
    this.now = opts.now ?? Date.now;
  }

  get stats(): MonitorStats {
    return { ...this.counters };
  }

  /** Schedules a tick every intervalMs, the first one right away. */
  start(): void {
    if (this.timer !== null || this.opts.signal?.aborted) return;
    this.timer = setInterval(() => this.fire(), this.opts.intervalMs);
    this.opts.signal?.addEventListener("abort", () => this.clearTimer(), { once: true });
    this.fire();
    for (const c of this.opts.companions ?? []) c.start();
  }

  /** Stops the timer and the companions, and waits for a running tick (and its alert commands). */
  async stop(): Promise<void> {
    this.clearTimer();
    await Promise.all((this.opts.companions ?? []).map((c) => c.stop()));
    while (this.running !== null) await this.running;
  }

  /**
   * Raises an alert decided outside the tick (the health watch's `unhealthy`) under the same
   * per-component cooldown as drift and flap alerts. null = suppressed by the cooldown or
   * dropped by confirm.
   */
  async raise(a: Alert): Promise<AlertOutcome | null> {
    const now = this.now();
    const key = componentKey(a.service, a.component);
    const last = this.lastAlert.get(key);
    if (last !== undefined && now - last < this.opts.cooldownMs) {
      this.opts.logger.debug(
        { alert_type: a.type, service: a.service, component: a.component },
        "alert suppressed by cooldown",
      );
      return null;
    }
    // Taken before delivery, as in a tick, so a slow confirm cannot let a twin through.
    this.lastAlert.set(key, now);
    const out = await this.deliver(a, now);
    if (out !== null) this.counters.alerts++;
    return out;
  }

  /** Runs one tick now, after any running one; errors propagate (the timer path logs them). */
  async tickOnce(): Promise<TickResult> {
    while (this.running !== null) await this.running.catch(() => undefined);
    const p = this.tick();
    this.track(p);
    return p;
  }

  private clearTimer(): void {
    if (this.timer !== null) clearInterval(this.timer);
    this.timer = null;
  }

  private fire(): void {
    if (this.running !== null) {
      this.counters.skipped++;
      this.opts.logger.debug(
        { interval_ms: this.opts.intervalMs },
        "monitor tick skipped: previous tick still running",
      );
      return;
    }
    const p = this.tick().catch((err: unknown) => {
      this.counters.errors++;
      this.opts.logger.error({ err: (err as Error).message }, "monitor tick failed; retrying next tick");
    });
    this.track(p);
  }

  private track(p: Promise<unknown>): void {
    const settled = p.then(
      () => undefined,
      () => undefined,
    );
    this.running = settled;
    void settled.then(() => {
      if (this.running === settled) this.running = null;
    });
  }

  private async tick(): Promise<TickResult> {
    const o = this.opts;
    const started = this.now();
    const pruned = o.store.pruneEvents(new Date(started - o.retentionMs));
    const { services, transitions } = await o.reconcile();
    const judged = await this.judge(transitions, services);
    this.counters.ticks++;
    o.logger.debug(
      { pruned, transitions: transitions.length, alerts: judged.alerts.length, ms: this.now() - started },
      "monitor tick",
    );
    return { pruned, transitions: transitions.length, ...judged };
  }

  /**
   * Judges transitions seen outside a tick (runtime events: a container died or was removed) at
   * once, by the same drift, flap and cooldown rules as a tick, and runs their alerts.
   * `services` gives the desired states.
   */
  async observe(
    transitions: readonly Transition[],
    services: readonly ServiceRecord[],
  ): Promise<Omit<TickResult, "pruned" | "transitions">> {
    return this.judge(transitions, services);
  }

  private async judge(
    transitions: readonly Transition[],
    services: readonly ServiceRecord[],
  ): Promise<Omit<TickResult, "pruned" | "transitions">> {
    const o = this.opts;
    const now = this.now();
    const desired = new Map<string, DesiredState>();
    for (const s of services)
      for (const c of s.components) desired.set(componentKey(s.name, c.name), c.desiredState);
    const flapCounts = new Map<string, number>();
    const since = new Date(now - o.flapWindowMs);
    for (const t of transitions) {
      const key = componentKey(t.service, t.component);
      if (!flapCounts.has(key)) flapCounts.set(key, flapCount(o.store, t.service, t.component, since));
    }
    const { alerts, suppressed } = evaluate({
      now,
      transitions,
      desired,
      flapCounts,
      lastAlert: this.lastAlert,
      cooldownMs: o.cooldownMs,
      flapThreshold: o.flapThreshold,
    });
    for (const a of suppressed) {
      o.logger.debug(
        { alert_type: a.type, service: a.service, component: a.component },
        "alert suppressed by cooldown",
      );
    }
    // Cooldown starts when the alert is decided, so a slow confirm cannot let a twin through.
    this.lastAlert = recordAlerts(this.lastAlert, alerts, now, o.cooldownMs);
    const outcomes = await Promise.all(alerts.map((a) => this.deliver(a, now)));
    const sent = alerts.filter((_, i) => outcomes[i] !== null);
    this.counters.alerts += sent.length;
    return {
      alerts: sent,
      suppressed,
      outcomes: outcomes.filter((x): x is AlertOutcome => x !== null),
    };
  }

  /** null = dropped by confirm (its cooldown entry is taken back). */
  private async deliver(a: Alert, decidedAt: number): Promise<AlertOutcome | null> {
    const o = this.opts;
    if (o.confirm) {
      let ok: boolean;
      try {
        ok = await o.confirm(a);
      } catch (err) {
        o.logger.warn(
          { err: (err as Error).message, service: a.service },
          "alert confirm failed; sending it",
        );
        ok = true;
      }
      if (!ok) {
        const key = componentKey(a.service, a.component);
        if (this.lastAlert.get(key) === decidedAt) this.lastAlert.delete(key);
        o.logger.debug(
          { alert_type: a.type, service: a.service, component: a.component },
          "alert dropped: no longer holds",
        );
        return null;
      }
    }
    return raiseAlert(o.sink, a);
  }
}
