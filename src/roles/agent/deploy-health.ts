// The deploy health gate wired to this agent: the component's recorded health declaration
// resolved to a target (health-target.ts), checked with the shared checkers (src/health) or
// runtime.exec, while the container is watched through inspect. Timing rules: health-gate.ts.

import { containerName } from "../../component/container.ts";
import { checkHttp, checkTcp } from "../../health/index.ts";
import { firstLine, type HealthCheck, hostPort } from "../../health/result.ts";
import type { ContainerDetails } from "../../runtime/runtime.ts";
import type { AgentContext } from "./context.ts";
import { type GateOutcome, runHealthGate } from "./health-gate.ts";
import { describeTarget, type HealthTarget, healthTarget } from "./health-target.ts";
import { nodeAddressOf } from "./host-ports.ts";

/** One check of a resolved target; exec runs inside `container`. Never throws. */
export function checkTarget(ctx: AgentContext, container: string, t: HealthTarget): HealthCheck {
  if (t.kind !== "exec") {
    if (t.kind === "tcp") return (budget) => checkTcp(t.host, t.port, budget);
    const url = `http://${hostPort(t.host, t.port)}${t.path}`;
    return (budget) => checkHttp(url, budget);
  }
  const what = describeTarget(t);
  const cmd = t.cmd;
  // A runtime that declared it cannot exec is not asked to: the check fails with why.
  const cannot = ctx.runtime.lacks(ctx.runtime.kindOfContainer(container), "exec");
  if (cannot) return async () => ({ healthy: false, detail: `${what}: ${cannot}`, ms: 0 });
  return async (budget) => {
    const t0 = performance.now();
    const ms = () => Math.round(performance.now() - t0);
    try {
      const r = await ctx.runtime.exec(container, cmd, budget);
      if (r.code === 0) return { healthy: true, detail: `${what} exited 0`, ms: ms() };
      const why = firstLine(r.stderr.trim() || r.stdout.trim());
      return { healthy: false, detail: `${what} exited ${r.code}${why ? `: ${why}` : ""}`, ms: ms() };
    } catch (err) {
      return { healthy: false, detail: `${what}: ${firstLine(err)}`, ms: ms() };
    }
  };
}

/**
 * Waits until the just-started container of service/component passes its declared check, or
 * fails (retries, exit, deadline). `started` is the inspect right after the start: a different
 * start time later means the restart policy replaced an exited container.
 */
export async function gateComponent(
  ctx: AgentContext,
  service: string,
  component: string,
  started: ContainerDetails,
): Promise<GateOutcome> {
  const rec = ctx.registry.getComponent(service, component);
  if (!rec?.health)
    return { healthy: true, cause: "healthy", checks: 0, ms: 0, detail: "no health check declared" };
  let target: HealthTarget;
  try {
    target = healthTarget(rec, nodeAddressOf(ctx.settings));
  } catch (err) {
    return { healthy: false, cause: "retries", checks: 0, ms: 0, detail: firstLine(err) };
  }
  const name = containerName(service, component);
  const startedAt = started.startedAt?.getTime() ?? null;
  const watch = async (): Promise<string | null> => {
    // State, exit code and start time only: no image lookup per poll.
    const d = await ctx.runtime.inspect(name, { imageDefaults: false }).catch(() => undefined);
    if (d === undefined) return null; // a runtime hiccup is no evidence the container is gone
    if (d === null) return "container removed";
    if (d.state !== "running") {
      return `container ${d.state}${d.exitCode !== null ? ` (exit code ${d.exitCode})` : ""}`;
    }
    if (startedAt !== null && d.startedAt !== null && d.startedAt.getTime() !== startedAt) {
      return "container exited and was restarted by its restart policy";
    }
    return null;
  };
  return runHealthGate(rec.health, checkTarget(ctx, name, target), watch);
}
