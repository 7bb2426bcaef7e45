// The monitor's health watch (issue 8 item 5): runs the declared health checks of running
// components, each at its own interval, at most `concurrency` at a time, each bounded by its
// timeout, and turns results into healthy/unhealthy transitions and `unhealthy` alerts. Only the
// scheduling and the state machine live here; listing targets, running a check, recording an
// event and raising an alert are injected (the agent wires them in roles/agent/monitor.ts).
//
// State machine per component (Docker/Compose semantics): failures during `start_period` after
// its container started do not count; `retries` consecutive counted failures make it unhealthy;
// one success makes it healthy and resets the count. Only changes are reported: the first
// success of a component never seen before sets the baseline ("unknown" → "healthy" is not
// recorded, else every agent start would write one event per component), while "unknown" →
// "unhealthy" is recorded and alerts. Entering `unhealthy` raises one alert; whether it is sent
// is the monitor's per-component cooldown, shared with drift and flap alerts.
//
// State lives in memory, like the monitor's cooldowns: an agent restart starts over from
// "unknown", so a component still unhealthy then is reported (and alerted) once more.
import type { Logger } from "pino";
import type { HealthDef } from "../config/service.ts";
import type { Alert } from "./alert.ts";
import { componentKey } from "./evaluate.ts";

export type HealthState = "unknown" | "healthy" | "unhealthy";

/** One component to check now: desired running, observed running, with a declared check. */
export interface WatchTarget {
  service: string;
  component: string;
  health: HealthDef;
  /**
   * When its container started (ms since the epoch), null when not known. A different value than
   * last time means a new container: the failure count starts over and start_period applies.
   */
  startedAt: number | null;
}

export interface CheckOutcome {
  healthy: boolean;
  /** One line: what was checked and what was seen (MCP_DETAIL of the alert). */
  detail: string;
}

export interface HealthTransition {
  service: string;
  component: string;
  prev: HealthState;
  next: "healthy" | "unhealthy";
  detail: string;
  /** Consecutive counted failures (0 for a transition to healthy). */
  failures: number;
}

export interface HealthWatchOptions<T extends WatchTarget> {
  /** The components to watch right now; called on every sweep, so it must be cheap. */
  targets: () => T[];
  /** One check; should honour timeoutMs itself (the watch gives up on it shortly after). */
  check: (target: T, timeoutMs: number) => Promise<CheckOutcome>;
  /** Records a transition (the agent writes a registry event). Errors are logged, not fatal. */
  record: (t: HealthTransition) => void;
  /** Raises the alert of a transition into unhealthy (the monitor applies the cooldown). */
  alert: (a: Alert) => Promise<unknown>;
  /** True while a service must not be checked (a deploy holds it; its gate owns health then). */
  busy?: (service: string) => boolean;
  /** Checks running at once across all components. */
  concurrency?: number;
  /** Longest sleep between sweeps, so new or changed targets are noticed at least this often. */
  pollMs?: number;
  logger: Logger;
  /** Aborting stops the timer (the agent's shutdown signal). */
  signal?: AbortSignal;
  now?: () => number;
}

export interface HealthWatchStats {
  checks: number;
  failures: number;
  timeouts: number;
  transitions: number;
  /** Most checks seen running at once. */
  peakConcurrency: number;
}

interface Entry {
  state: HealthState;
  failures: number;
  nextDue: number;
  startedAt: number | null;
  inFlight: boolean;
}

export const DEFAULT_CONCURRENCY = 4;
export const DEFAULT_POLL_MS = 1_000;
// A check that ignores its own timeout is abandoned this long after it (as a failure), so a
// hung checker cannot hold a concurrency slot for ever; its own timeout detail wins normally.
const TIMEOUT_GRACE_MS = 250;

export class HealthWatch<T extends WatchTarget = WatchTarget> {
  private readonly opts: HealthWatchOptions<T>;
  private readonly now: () => number;
  private readonly concurrency: number;
  private readonly entries = new Map<string, Entry>();
  private readonly pending = new Set<Promise<void>>();
  private running = 0;
  private timer: ReturnType<typeof setTimeout> | null = null;
  private started = false;
  private stopped = false;
  private readonly counters: HealthWatchStats = {
    checks: 0,
    failures: 0,
    timeouts: 0,
    transitions: 0,
    peakConcurrency: 0,
  };

  constructor(opts: HealthWatchOptions<T>) {
    this.opts = opts;
    this.now = opts.now ?? Date.now;
    this.concurrency = Math.max(1, opts.concurrency ?? DEFAULT_CONCURRENCY);
  }

  get stats(): HealthWatchStats {
    return { ...this.counters };
  }

  /** The current health of a component ("unknown" when not watched or not yet decided). */
  stateOf(service: string, component: string): HealthState {
    return this.entries.get(componentKey(service, component))?.state ?? "unknown";
  }

  /** Checks running right now. */
  get inFlight(): number {
    return this.running;
  }

  /** Sweeps now and then whenever a check falls due (at most pollMs apart). */
  start(): void {
    if (this.started || this.stopped || this.opts.signal?.aborted) return;
    this.started = true;
    this.opts.signal?.addEventListener("abort", () => this.halt(), { once: true });
    this.sweep();
  }

  /** Stops sweeping and waits for the checks (and alerts) under way. */
  async stop(): Promise<void> {
    this.halt();
    while (this.pending.size > 0) await Promise.all([...this.pending]);
  }

  /** Resolves when every check and alert started so far has finished (for tests). */
  async settle(): Promise<void> {
    while (this.pending.size > 0) await Promise.all([...this.pending]);
  }

  /**
   * One scheduling pass: refresh the targets, forget components no longer watched, and start the
   * checks that are due, most overdue first, while slots are free. Returns how many it started.
   */
  sweep(): number {
    if (this.stopped) return 0;
    const now = this.now();
    let targets: T[];
    try {
      targets = this.opts.targets();
    } catch (err) {
      this.opts.logger.warn({ err: (err as Error).message }, "health watch: cannot list targets");
      this.arm(now + (this.opts.pollMs ?? DEFAULT_POLL_MS));
      return 0;
    }
    const seen = new Set<string>();
    const due: { target: T; entry: Entry }[] = [];
    for (const t of targets) {
      const key = componentKey(t.service, t.component);
      seen.add(key);
      let e = this.entries.get(key);
      if (e === undefined) {
        e = { state: "unknown", failures: 0, nextDue: now, startedAt: t.startedAt, inFlight: false };
        this.entries.set(key, e);
      } else if (t.startedAt !== e.startedAt && !e.inFlight) {
        // A new container: its own start period, its own failure count.
        e.startedAt = t.startedAt;
        e.failures = 0;
      }
      if (e.inFlight || e.nextDue > now) continue;
      if (this.opts.busy?.(t.service)) {
        // Its deploy gate owns health now: skip this round, look again one interval later.
        e.nextDue = now + t.health.intervalMs;
        continue;
      }
      due.push({ target: t, entry: e });
    }
    for (const [key, e] of this.entries) if (!seen.has(key) && !e.inFlight) this.entries.delete(key);
    due.sort((a, b) => a.entry.nextDue - b.entry.nextDue);
    let launched = 0;
    for (const d of due) {
      if (this.running >= this.concurrency) break;
      this.launch(d.target, d.entry, now);
      launched++;
    }
    this.armNext(now);
    return launched;
  }

  private launch(t: T, e: Entry, now: number): void {
    e.inFlight = true;
    this.running++;
    this.counters.peakConcurrency = Math.max(this.counters.peakConcurrency, this.running);
    const p = this.runOne(t, e, now).finally(() => {
      this.pending.delete(p);
    });
    this.pending.add(p);
  }

  private async runOne(t: T, e: Entry, launchedAt: number): Promise<void> {
    const timeoutMs = t.health.timeoutMs;
    let result: CheckOutcome;
    let timer: ReturnType<typeof setTimeout> | undefined;
    try {
      const giveUp = new Promise<CheckOutcome>((resolve) => {
        timer = setTimeout(() => {
          this.counters.timeouts++;
          resolve({ healthy: false, detail: `${t.health.type} check gave no answer within ${timeoutMs} ms` });
        }, timeoutMs + TIMEOUT_GRACE_MS);
      });
      result = await Promise.race([this.opts.check(t, timeoutMs), giveUp]);
    } catch (err) {
      result = { healthy: false, detail: `${t.health.type} check failed: ${(err as Error).message}` };
    } finally {
      clearTimeout(timer);
      this.running--;
    }
    this.counters.checks++;
    const done = this.now();
    e.inFlight = false;
    // Next check one interval after this one started, but never a backlog of them.
    e.nextDue = Math.max(launchedAt + t.health.intervalMs, done);
    // Stopped (agent shutdown): a check failing because everything goes down is not news.
    if (this.stopped) return;
    if (this.entries.get(componentKey(t.service, t.component)) === e) this.judge(t, e, result, launchedAt);
    // A slot is free: start whatever is waiting for one.
    this.sweep();
  }

  /** Applies one result to the state machine; reports a change. */
  private judge(t: T, e: Entry, r: CheckOutcome, launchedAt: number): void {
    if (r.healthy) {
      e.failures = 0;
      if (e.state === "healthy") return;
      const prev = e.state;
      e.state = "healthy";
      // The first verdict on a component is a baseline, not a change: logged, not recorded.
      if (prev === "unknown")
        this.opts.logger.debug({ ...this.ids(t), detail: r.detail }, "health: first check healthy");
      else this.report({ ...this.ids(t), prev, next: "healthy", detail: r.detail, failures: 0 });
      return;
    }
    this.counters.failures++;
    const inStartPeriod = e.startedAt !== null && launchedAt < e.startedAt + t.health.startPeriodMs;
    if (inStartPeriod) {
      this.opts.logger.debug(
        { service: t.service, component: t.component, detail: r.detail },
        "health check failed within start_period; not counted",
      );
      return;
    }
    e.failures++;
    if (e.failures < t.health.retries || e.state === "unhealthy") return;
    const prev = e.state;
    e.state = "unhealthy";
    const tr: HealthTransition = {
      ...this.ids(t),
      prev,
      next: "unhealthy",
      detail: r.detail,
      failures: e.failures,
    };
    this.report(tr);
    const alert: Alert = {
      type: "unhealthy",
      service: t.service,
      component: t.component,
      desired: "running",
      observed: "unhealthy",
      prev,
      // For unhealthy alerts: the consecutive failed checks that decided it.
      transitions: e.failures,
      detail: r.detail,
    };
    const p = this.opts
      .alert(alert)
      .then(() => undefined)
      .catch((err: unknown) =>
        this.opts.logger.warn({ err: (err as Error).message, service: t.service }, "unhealthy alert failed"),
      )
      .finally(() => this.pending.delete(p));
    this.pending.add(p);
  }

  private ids(t: T): { service: string; component: string } {
    return { service: t.service, component: t.component };
  }

  private report(tr: HealthTransition): void {
    this.counters.transitions++;
    const fields = {
      service: tr.service,
      component: tr.component,
      prev: tr.prev,
      next: tr.next,
      detail: tr.detail,
    };
    this.opts.logger.info(fields, `health: ${tr.service}/${tr.component} ${tr.prev} -> ${tr.next}`);
    try {
      this.opts.record(tr);
    } catch (err) {
      this.opts.logger.warn({ ...fields, err: (err as Error).message }, "health transition not recorded");
    }
  }

  /**
   * Wakes at the next due time of an idle entry, polling for new targets at least every pollMs.
   * Entries already due wait for a free slot, and a finishing check sweeps anyway.
   */
  private armNext(now: number): void {
    let next = now + (this.opts.pollMs ?? DEFAULT_POLL_MS);
    for (const e of this.entries.values())
      if (!e.inFlight && e.nextDue > now && e.nextDue < next) next = e.nextDue;
    this.arm(next);
  }

  private arm(at: number): void {
    if (!this.started || this.stopped) return;
    if (this.timer !== null) clearTimeout(this.timer);
    const delay = Math.max(1, at - this.now());
    this.timer = setTimeout(() => {
      this.timer = null;
      this.sweep();
    }, delay);
  }

  private halt(): void {
    this.stopped = true;
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
  }
}
