// Stop, start, restart of a service's components. Stop sets desired `stopped` (and the service
// inactive); start sets desired `running`, recreating a missing container from the stored spec.
import type { MessageInitShape } from "@bufbuild/protobuf";
import { containerName } from "../../component/container.ts";
import { recordToDef } from "../../component/registry.ts";
import type { ComponentResultSchema, McpAgent } from "../../gen/mcp/v1/mcp_pb.ts";
import type { ComponentRecord } from "../../registry/types.ts";
import { invalidArgument, notFound } from "../../rpc/errors.ts";
import type { Handlers } from "../../rpc/service.ts";
import type { AgentContext } from "./context.ts";
import { runComponentHook } from "./hooks.ts";
import { requireMountsConfined } from "./host-access.ts";
import { runSpec } from "./host-ports.ts";
import { runtimeRefusal } from "./runtimes.ts";

type Result = MessageInitShape<typeof ComponentResultSchema>;

// Every inspect here reads only whether the container exists and its state: no image lookup.
const STATE_ONLY = { imageDefaults: false } as const;

function componentsOf(ctx: AgentContext, service: string, component?: string): ComponentRecord[] {
  const svc = ctx.registry.getService(service);
  if (!svc) throw notFound(`unknown service "${service}" on node ${ctx.settings.nodeName}`);
  if (!component) return svc.components;
  const c = svc.components.find((x) => x.name === component);
  if (!c) throw notFound(`service ${service} has no component "${component}"`);
  return [c];
}

async function each(
  ctx: AgentContext,
  service: string,
  comps: ComponentRecord[],
  fn: (c: ComponentRecord, name: string) => Promise<void>,
): Promise<Result[]> {
  const results: Result[] = [];
  for (const c of comps) {
    const name = containerName(service, c.name);
    // Nothing of a runtime this node lacks is touched, and its observed state is not guessed.
    const refused = runtimeRefusal(ctx, service, c);
    if (refused) {
      results.push({ name: c.name, success: false, error: refused });
      continue;
    }
    try {
      await fn(c, name);
      results.push({ name: c.name, success: true, version: c.version });
    } catch (err) {
      results.push({ name: c.name, success: false, error: (err as Error).message.split("\n")[0] });
    }
    const details = await ctx.runtime.inspect(name, STATE_ONLY).catch(() => null);
    ctx.registry.setObservedState(service, c.name, details?.state ?? "removed");
  }
  return results;
}

export function stopService(ctx: AgentContext, service: string, component?: string): Promise<Result[]> {
  return ctx.locks.run(service, async () => {
    const comps = componentsOf(ctx, service, component);
    ctx.registry.withTransaction(() => {
      for (const c of comps) ctx.registry.setDesiredState(service, c.name, "stopped");
      if (!component) ctx.registry.setServiceActive(service, false);
    });
    return each(ctx, service, comps, async (c, name) => {
      if (await ctx.runtime.inspect(name, STATE_ONLY)) await ctx.runtime.stop(name);
      const hookFailure = await runComponentHook(ctx, "onStopped", service, c.name);
      if (hookFailure) throw new Error(hookFailure);
    });
  });
}

export function startService(ctx: AgentContext, service: string, component?: string): Promise<Result[]> {
  return ctx.locks.run(service, async () => {
    const comps = componentsOf(ctx, service, component);
    ctx.registry.withTransaction(() => {
      for (const c of comps) ctx.registry.setDesiredState(service, c.name, "running");
      if (!component) ctx.registry.setServiceActive(service, true);
    });
    return each(ctx, service, comps, async (c, name) => {
      requireMountsConfined(ctx, service, [recordToDef(c)]);
      const existing = await ctx.runtime.inspect(name, STATE_ONLY);
      if (!existing) await ctx.runtime.run(runSpec(ctx.settings, service, recordToDef(c), c.routes));
      else if (existing.state !== "running") await ctx.runtime.start(name);
      // Stop withdrew its routes and DNS record: bring them back (upserts, so a no-op if present).
      const hookFailure = await runComponentHook(ctx, "onDeployed", service, c.name);
      if (hookFailure) throw new Error(hookFailure);
    });
  });
}

export function restartService(ctx: AgentContext, service: string, component?: string): Promise<Result[]> {
  return ctx.locks.run(service, async () => {
    const comps = componentsOf(ctx, service, component);
    return each(ctx, service, comps, async (c, name) => {
      requireMountsConfined(ctx, service, [recordToDef(c)]);
      const existing = await ctx.runtime.inspect(name, STATE_ONLY);
      if (!existing) await ctx.runtime.run(runSpec(ctx.settings, service, recordToDef(c), c.routes));
      else await ctx.runtime.restart(name);
      ctx.registry.setDesiredState(service, c.name, "running");
      // A restart after a stop brings the service back: so do its routes and DNS record.
      const hookFailure = await runComponentHook(ctx, "onDeployed", service, c.name);
      if (hookFailure) throw new Error(hookFailure);
    });
  });
}

function requireName(name: string): string {
  if (!name) throw invalidArgument("service name is required");
  return name;
}

/** StopService, StartService, RestartService (a whole service or one component). */
export function lifecycleHandlers(ctx: AgentContext): Partial<Handlers<typeof McpAgent>> {
  return {
    async stopService(req) {
      return { results: await stopService(ctx, requireName(req.name), req.component || undefined) };
    },
    async startService(req) {
      return { results: await startService(ctx, requireName(req.name), req.component || undefined) };
    },
    async restartService(req) {
      return { results: await restartService(ctx, requireName(req.name), req.component || undefined) };
    },
  };
}
