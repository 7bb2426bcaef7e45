import { containerName } from "../../component/container.ts";
import { alertSink } from "../../monitor/alert.ts";
import { type CheckOutcome, HealthWatch, type WatchTarget } from "../../monitor/health-watch.ts";
import { Monitor } from "../../monitor/monitor.ts";
import type { ComponentRecord } from "../../registry/types.ts";
import { isDrift } from "../../registry/types.ts";
import type { AgentContext, MonitorSettings } from "./context.ts";
import { checkTarget } from "./deploy-health.ts";
import { healthTarget } from "./health-target.ts";
import { nodeAddressOf } from "./host-ports.ts";
import { reconcile } from "./reconcile.ts";

interface ComponentTarget extends WatchTarget {
  record: ComponentRecord;
}

/** One declared check of a running component: the deploy gate's checker (deploy-health.ts). */
async function runCheck(ctx: AgentContext, c: ComponentRecord, timeoutMs: number): Promise<CheckOutcome> {
  // The node address route ports are published on, as the deploy gate resolves it.
  const t = healthTarget(c, nodeAddressOf(ctx.settings));
  return checkTarget(ctx, containerName(c.service, c.name), t)(timeoutMs);
}

/**
 * How stale the live view may get before a monitor tick lists to confirm it (the events keep it
 * current; the listing is the net under a stream that stalls without failing). One listing per
 * tick was issue 10's polling: with 100 services ~0.3 s of agent and podman CPU each time.
 */
export const SAFETY_NET_MS = 300_000;
/** Ticks are not exact: a tick due at the limit still lists when it lands a little early. */
const SAFETY_NET_SLACK_MS = 2_000;

export function startMonitor(ctx: AgentContext, m: MonitorSettings): Monitor {
  // Container start times from the latest reconcile: a new one tells the health watch that a
  // component's container was replaced (its failure count and start_period start over).
  let startedAt = new Map<string, number>();
  const health = new HealthWatch<ComponentTarget>({
    targets: () =>
      ctx.registry.listServices().flatMap((s) =>
        s.components
          .filter(
            (c) => c.health !== undefined && c.desiredState === "running" && c.observedState === "running",
          )
          .map((c) => ({
            service: s.name,
            component: c.name,
            health: c.health!,
            startedAt: startedAt.get(containerName(s.name, c.name)) ?? c.updatedAt.getTime(),
            record: c,
          })),
      ),
    check: (t, timeoutMs) => runCheck(ctx, t.record, timeoutMs),
    // Health transitions share the events table with observed-state transitions (same service
    // and component; states "healthy"/"unhealthy"), so `mcp status` shows them among recent
    // events; the monitor's flap count only counts events between observed states.
    record: (t) =>
      void ctx.registry.insertEvent({
        service: t.service,
        component: t.component,
        prevState: t.prev,
        newState: t.next,
      }),
    alert: (a) => monitor.raise(a),
    // A deploy holds the service lock through its own health gate.
    busy: (s) => ctx.locks.isHeld(s),
    logger: ctx.logger,
    signal: ctx.shutdown,
  });
  const monitor = new Monitor({
    intervalMs: m.intervalMs,
    cooldownMs: m.cooldownMs,
    flapThreshold: m.flapThreshold,
    flapWindowMs: m.flapWindowMs,
    retentionMs: m.retentionMs,
    store: ctx.registry,
    reconcile: async () => {
      // The safety net under the event stream: a full listing confirms the live view (and
      // reports what it missed to the recorder) before the registry is reconciled, when the view
      // was last confirmed SAFETY_NET_MS ago or more (a deploy, stop or stream restart confirms it
      // too). A stream that fails is noticed and resynchronised at once; this bounds what a stream
      // that stalls without failing could hide. Without a current view the reconcile's own
      // listing goes to the runtime.
      await ctx.live?.resyncIfOlder(Math.max(SAFETY_NET_MS, m.intervalMs) - SAFETY_NET_SLACK_MS);
      // A deploy or stop in flight replaces containers under its service lock: a listing taken
      // then shows `removed` for a moment. Leave such services alone (held before the listing or
      // when its result is written); the operation records the state itself.
      const busy = new Set(ctx.locks.heldKeys());
      return reconcile(ctx, { skipService: (s) => busy.has(s) || ctx.locks.isHeld(s) }).then((res) => {
        const next = new Map<string, number>();
        for (const [name, c] of res.containers)
          if (c.startedAt !== null) next.set(name, c.startedAt.getTime());
        startedAt = next;
        return res;
      });
    },
    sink: alertSink(ctx.settings),
    logger: ctx.logger,
    // A deploy removes and recreates a container under the service lock: wait for it, then
    // check the registry (which the deploy updated) still shows the drift.
    confirm: (a) =>
      ctx.locks.run(a.service, async () => {
        const c = ctx.registry.getComponent(a.service, a.component);
        if (c === null || c.desiredState === "ignore") return false;
        if (a.type === "unhealthy") return health.stateOf(a.service, a.component) === "unhealthy";
        return a.type !== "drift" || isDrift(c.desiredState, c.observedState);
      }),
    signal: ctx.shutdown,
    companions: [health],
  });
  // Runtime events are judged at once by the same rules (live-events.ts).
  ctx.recorder?.setJudge((transitions, services) => monitor.observe(transitions, services));
  monitor.start();
  ctx.logger.info({ interval_ms: m.intervalMs, alert_command: m.alertCommand[0] ?? null }, "monitor started");
  return monitor;
}
