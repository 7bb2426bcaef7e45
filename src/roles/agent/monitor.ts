// Startup step 3: the monitor loop (src/monitor/) wired to this agent — its registry, its
// reconcile, its alert sink, its shutdown signal, and its per-service locks so neither an event
// nor an alert comes from a half-done deploy or stop.
import { alertSink } from "../../monitor/alert.ts";
import { Monitor } from "../../monitor/monitor.ts";
import { isDrift } from "../../registry/types.ts";
import type { AgentContext, MonitorSettings } from "./context.ts";
import { reconcile } from "./reconcile.ts";

export function startMonitor(ctx: AgentContext, m: MonitorSettings): Monitor {
  const monitor = new Monitor({
    intervalMs: m.intervalMs,
    cooldownMs: m.cooldownMs,
    flapThreshold: m.flapThreshold,
    flapWindowMs: m.flapWindowMs,
    retentionMs: m.retentionMs,
    store: ctx.registry,
    reconcile: () => {
      // A deploy or stop in flight replaces containers under its service lock: a listing taken
      // then shows `removed` for a moment. Leave such services alone (held before the listing or
      // when its result is written); the operation records the state itself.
      const busy = new Set(
        ctx.registry
          .listServices()
          .map((s) => s.name)
          .filter((n) => ctx.locks.isHeld(n)),
      );
      return reconcile(ctx, { skipService: (s) => busy.has(s) || ctx.locks.isHeld(s) });
    },
    sink: alertSink(ctx.settings),
    logger: ctx.logger,
    // A deploy removes and recreates a container under the service lock: wait for it, then
    // check the registry (which the deploy updated) still shows the drift.
    confirm: (a) =>
      ctx.locks.run(a.service, async () => {
        const c = ctx.registry.getComponent(a.service, a.component);
        if (c === null || c.desiredState === "ignore") return false;
        return a.type !== "drift" || isDrift(c.desiredState, c.observedState);
      }),
    signal: ctx.shutdown,
  });
  monitor.start();
  ctx.logger.info({ interval_ms: m.intervalMs, alert_command: m.alertCommand[0] ?? null }, "monitor started");
  return monitor;
}
