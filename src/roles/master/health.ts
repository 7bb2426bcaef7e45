// Node health on the master (architecture-v2 "Heartbeats"): a node that has not been heard from
// for heartbeat_miss × heartbeat_interval is probed with its agent's HealthCheck (probe_timeout);
// a failed probe marks it unhealthy (placement skips it, its services keep running), a passed
// probe or any heartbeat marks it healthy. Until the first probe round of startup reconciliation
// is over (warm-up), unhealthy transitions are logged at info, not warn: agents that simply have
// not started yet are not news.
//
// HeartbeatTracker is the pure part (injected clock); MasterHealth applies it to the store and
// runs the periodic check as a master background task.
import type { Logger } from "pino";
import type { AgentPool } from "./agents.ts";
import type { Background, MasterContext } from "./context.ts";
import { agentLister, reconcileFleet } from "./reconcile.ts";
import type { MasterStore, NodeRecord, NodeStatus } from "./store.ts";

export interface HealthConfig {
  heartbeatIntervalMs: number;
  heartbeatMiss: number;
  probeTimeoutMs: number;
  /** How often the check runs; default heartbeat_interval / 2, within [100 ms, 5 s]. */
  checkIntervalMs: number;
}

export function healthConfigOf(cfg: {
  master: { heartbeat_interval: number; heartbeat_miss: number; probe_timeout: number };
}): HealthConfig {
  const m = cfg.master;
  return {
    heartbeatIntervalMs: m.heartbeat_interval,
    heartbeatMiss: m.heartbeat_miss,
    probeTimeoutMs: m.probe_timeout,
    checkIntervalMs: Math.min(5000, Math.max(100, Math.floor(m.heartbeat_interval / 2))),
  };
}

export type HealthEvent = { kind: "heartbeat" } | { kind: "probe"; ok: boolean };

/** The status a node has after an event (the whole state machine: any sign of life → healthy). */
export function nextStatus(_prev: NodeStatus, ev: HealthEvent): NodeStatus {
  if (ev.kind === "heartbeat") return "healthy";
  return ev.ok ? "healthy" : "unhealthy";
}

/**
 * When each node was last heard from (heartbeat, registration or a passed probe) and last probed.
 * A node is due for a probe once the window (miss × interval) has passed since the later of the
 * two, so a dead node is probed once per window, not on every check tick. Nodes the tracker has
 * never seen count from the tracker's creation (a restarted master gives every node a full window).
 */
export class HeartbeatTracker {
  private readonly lastSeen = new Map<string, number>();
  private readonly lastProbe = new Map<string, number>();
  private readonly since: number;

  constructor(
    readonly windowMs: number,
    private readonly now: () => number = Date.now,
  ) {
    this.since = now();
  }

  seen(node: string): void {
    this.lastSeen.set(node, this.now());
  }

  probed(node: string, ok: boolean): void {
    const t = this.now();
    this.lastProbe.set(node, t);
    if (ok) this.lastSeen.set(node, t);
  }

  /** Ms since the node was last heard from (or since the tracker started). */
  silentFor(node: string): number {
    return this.now() - (this.lastSeen.get(node) ?? this.since);
  }

  isDue(node: string): boolean {
    const ref = Math.max(this.lastSeen.get(node) ?? this.since, this.lastProbe.get(node) ?? 0);
    return this.now() - ref >= this.windowMs;
  }

  due(nodes: readonly string[]): string[] {
    return nodes.filter((n) => this.isDue(n));
  }

  forget(node: string): void {
    this.lastSeen.delete(node);
    this.lastProbe.delete(node);
  }
}

/** Calls the node's HealthCheck, rejecting on failure or after timeoutMs. */
export type Prober = (node: NodeRecord, timeoutMs: number) => Promise<void>;

/** The real probe: the agent's HealthCheck through the master's client pool. */
export function agentProber(pool: AgentPool): Prober {
  return async (node, timeoutMs) => {
    const client = await pool.get(node);
    await client.healthCheck({}, { timeoutMs });
  };
}

export interface MasterHealthDeps {
  store: MasterStore;
  logger: Logger;
  config: HealthConfig;
  probe: Prober;
  now?: () => number;
}

export interface HealthBackground {
  stop(): Promise<void>;
}

export class MasterHealth {
  readonly tracker: HeartbeatTracker;
  /** False until the first probe round (startup reconciliation) is over. */
  private warm = false;

  constructor(private readonly deps: MasterHealthDeps) {
    this.tracker = new HeartbeatTracker(
      deps.config.heartbeatMiss * deps.config.heartbeatIntervalMs,
      deps.now ?? Date.now,
    );
  }

  get warmedUp(): boolean {
    return this.warm;
  }

  /** Ends warm-up: from now on unhealthy transitions are warnings. */
  markWarm(): void {
    if (this.warm) return;
    this.warm = true;
    this.deps.logger.info("master health: warm-up over, health alerting active");
  }

  /** A heartbeat or registration: the node is alive. */
  heartbeat(name: string): void {
    this.tracker.seen(name);
    this.apply(name, { kind: "heartbeat" }, "heartbeat");
  }

  /** Probes one node and records the result; resolves to whether it answered. */
  async probe(node: NodeRecord): Promise<boolean> {
    let ok = true;
    let why = "";
    try {
      await withTimeout(
        this.deps.probe(node, this.deps.config.probeTimeoutMs),
        this.deps.config.probeTimeoutMs,
      );
    } catch (err) {
      ok = false;
      why = (err as Error).message ?? String(err);
    }
    this.tracker.probed(node.name, ok);
    this.apply(
      node.name,
      { kind: "probe", ok },
      ok ? "health probe answered" : `health probe failed: ${why}`,
    );
    return ok;
  }

  /** One check tick: probes (in parallel) every node silent for longer than the window. */
  async checkOnce(): Promise<void> {
    const nodes = this.deps.store.listNodes();
    const due = new Set(this.tracker.due(nodes.map((n) => n.name)));
    await Promise.all(
      nodes
        .filter((n) => due.has(n.name))
        .map((n) => {
          this.deps.logger.info(
            { node: n.name, silent_ms: this.tracker.silentFor(n.name) },
            "no heartbeat within the window: probing",
          );
          return this.probe(n);
        }),
    );
  }

  /** The periodic check as a background task; ticks never overlap, stop() waits for the current one. */
  start(): HealthBackground {
    let stopped = false;
    let timer: ReturnType<typeof setTimeout> | null = null;
    let running: Promise<void> = Promise.resolve();
    const tick = () => {
      if (stopped) return;
      running = this.checkOnce()
        .catch((err: unknown) => {
          this.deps.logger.error({ err: (err as Error).message }, "health check tick failed");
        })
        .finally(() => {
          if (!stopped) timer = setTimeout(tick, this.deps.config.checkIntervalMs);
        });
    };
    timer = setTimeout(tick, this.deps.config.checkIntervalMs);
    return {
      stop: async () => {
        stopped = true;
        if (timer) clearTimeout(timer);
        await running;
      },
    };
  }

  private apply(name: string, ev: HealthEvent, reason: string): void {
    const prev = this.deps.store.getNode(name)?.status;
    if (prev === undefined) return; // not (or no longer) registered
    const next = nextStatus(prev, ev);
    if (next === prev) return;
    this.deps.store.setNodeStatus(name, next);
    const fields = { node: name, from: prev, to: next, reason };
    if (next === "unhealthy" && this.warm) this.deps.logger.warn(fields, "node unhealthy");
    else this.deps.logger.info(fields, `node ${next}`);
  }
}

function withTimeout<T>(p: Promise<T>, ms: number): Promise<T> {
  let t: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    t = setTimeout(() => reject(new Error(`no answer within ${ms} ms`)), ms + 250);
  });
  return Promise.race([p, timeout]).finally(() => clearTimeout(t));
}

// ---- wiring into the master ------------------------------------------------------------------

const perMaster = new WeakMap<MasterContext, MasterHealth>();

/** The master's one MasterHealth (shared by the heartbeat handler and the background check). */
export function masterHealthOf(ctx: MasterContext): MasterHealth {
  let h = perMaster.get(ctx);
  if (!h) {
    const hb = ctx.settings.heartbeat;
    h = new MasterHealth({
      store: ctx.store,
      logger: ctx.logger,
      config: healthConfigOf({
        master: {
          heartbeat_interval: hb.intervalMs,
          heartbeat_miss: hb.miss,
          probe_timeout: hb.probeTimeoutMs,
        },
      }),
      probe: agentProber(ctx.agents),
    });
    perMaster.set(ctx, h);
  }
  return h;
}

/**
 * The master's health background task: startup reconciliation (probe every known node, compare
 * placements with what agents run, end warm-up), and from then on the periodic heartbeat check.
 * The findings land in ctx.fleetReport for Status.
 */
export function startHealthMonitor(ctx: MasterContext): Background {
  const health = masterHealthOf(ctx);
  const loop = health.start();
  const reconciling = reconcileFleet({
    store: ctx.store,
    logger: ctx.logger,
    health,
    list: agentLister(ctx.agents),
    timeoutMs: ctx.settings.timeouts.healthCheckMs,
  })
    .then((r) => {
      ctx.fleetReport = {
        orphans: r.orphans,
        stalePlacements: r.stalePlacements,
        at: new Date(r.finishedAt),
      };
    })
    .catch((err: unknown) => {
      health.markWarm();
      ctx.logger.error({ err: (err as Error).message }, "startup reconciliation failed");
    });
  return {
    async stop() {
      await loop.stop();
      await reconciling;
    },
  };
}
