// Undeploy use case: full teardown of one service on this node. Stop and remove every
// component's container, run the integration teardown hooks (routes, DNS, certs), then delete
// the service from the registry (host ports freed, events kept as history). /srv/<svc>/ data is
// never touched. Idempotent: an unknown or already undeployed service is "nothing to do".
import type { MessageInitShape } from "@bufbuild/protobuf";
import { containerName } from "../../component/container.ts";
import type { ComponentResultSchema, McpAgent, StepTimingSchema } from "../../gen/mcp/v1/mcp_pb.ts";
import type { ServiceRecord } from "../../registry/types.ts";
import { failedPrecondition, invalidArgument } from "../../rpc/errors.ts";
import type { Handlers } from "../../rpc/service.ts";
import type { AgentContext } from "./context.ts";
import { firstHookFailure, stepTiming } from "./hooks.ts";
import { describeClaim, type ForeignClaim, foreignClaim } from "./ownership.ts";
import { pruneVmCache } from "./vm-cache.ts";

type Result = MessageInitShape<typeof ComponentResultSchema>;
type Step = MessageInitShape<typeof StepTimingSchema>;

/**
 * Results per component, plus one result with an empty name for the service-level integration
 * teardown when it ran steps. An empty list means there was nothing to undeploy.
 */
export function undeployService(ctx: AgentContext, service: string): Promise<Result[]> {
  return ctx.locks.run(service, async () => {
    const svc = ctx.registry.getService(service);
    if (!svc) return [];
    if (svc.components.length > 0 && svc.components.every((c) => c.desiredState === "ignore")) {
      // A discovered container MCP never managed: removing it is podman's job, not undeploy's.
      throw failedPrecondition(
        `"${service}" is an unmanaged container (desired state ignore) on node ${ctx.settings.nodeName}: adopt it first or remove it with the runtime`,
      );
    }
    return teardown(ctx, svc);
  });
}

/**
 * Undeploy's work, for a caller that holds the service's lock (undeployService; a failed first
 * deploy, which leaves nothing behind): containers, then routes/DNS/certs, then the registry entry.
 */
export async function teardown(
  ctx: AgentContext,
  svc: ServiceRecord,
  opts: {
    /**
     * Run the undeploy hooks (routes, DNS, certs). A failed first deploy passes false: nothing
     * of it ran, so it registered no route or record, and the hooks remove by hostname whatever
     * is there, which may be another service's route and certificate.
     */
    integrations?: boolean;
  } = {},
): Promise<Result[]> {
  const service = svc.name;
  const results: Result[] = [];
  for (const c of svc.components) {
    // Unmanaged containers sharing the name stay; the next reconcile rediscovers them.
    if (c.desiredState === "ignore") continue;
    const name = containerName(service, c.name);
    const steps: Step[] = [];
    // Set when the container under this name is another service's: it is left running.
    let foreign: ForeignClaim | null = null;
    try {
      const existing = await timed(steps, "stop", async () => {
        const d = await ctx.runtime.inspect(name, { imageDefaults: false });
        // Its owner label says whose it is; without one (older containers) the registry does,
        // and a name the registry also gives to another service is not removed on a guess.
        foreign = d ? foreignClaim(ctx.registry, service, name, d.owner) : null;
        if (foreign) return null;
        if (d?.state === "running") await ctx.runtime.stop(name);
        return d;
      });
      if (existing) await timed(steps, "remove", () => ctx.runtime.remove(name, true));
      const warnings = foreign
        ? [`container ${name} belongs to ${describeClaim(foreign)}: left as it is`]
        : [];
      results.push({ name: c.name, success: true, version: c.version, steps, warnings });
    } catch (err) {
      results.push({ name: c.name, success: false, error: (err as Error).message.split("\n")[0], steps });
    }
    const after = foreign ? null : await ctx.runtime.inspect(name).catch(() => null);
    // The transition to "removed" is recorded as an event before the entry goes.
    ctx.registry.setObservedState(service, c.name, after?.state ?? "removed");
  }
  const containersGone = results.every((r) => r.success);
  if (!containersGone) {
    // Keep the entry so a retry finds what is left; nothing should restart it meanwhile.
    ctx.registry.withTransaction(() => {
      ctx.registry.setDesiredState(service, null, "stopped");
      ctx.registry.setServiceActive(service, false);
    });
    return results;
  }
  let hookSteps: Awaited<ReturnType<typeof ctx.hooks.onUndeployed>> = [];
  try {
    if (opts.integrations !== false) hookSteps = await ctx.hooks.onUndeployed(svc);
  } catch (err) {
    hookSteps = [{ step: "integrations", success: false, error: (err as Error).message.split("\n")[0] }];
  }
  const hookFailure = firstHookFailure(hookSteps);
  if (hookSteps.length > 0) {
    results.push({
      name: "",
      success: hookFailure === null,
      error: hookFailure ?? "",
      steps: hookSteps.map(stepTiming),
    });
  }
  if (hookFailure) {
    // Containers are gone but routes/DNS/certs may remain: keep the entry so a retry tears down again.
    ctx.registry.withTransaction(() => {
      ctx.registry.setDesiredState(service, null, "stopped");
      ctx.registry.setServiceActive(service, false);
    });
    return results;
  }
  ctx.registry.deleteService(service);
  ctx.logger.info({ service, components: svc.components.map((c) => c.name) }, "service undeployed");
  return results;
}

async function timed<T>(steps: Step[], step: string, fn: () => Promise<T>): Promise<T> {
  const t0 = performance.now();
  try {
    return await fn();
  } finally {
    steps.push({ step, durationMs: BigInt(Math.round(performance.now() - t0)), detail: "" });
  }
}

/** UndeployService: whole services only. */
export function undeployHandlers(ctx: AgentContext): Partial<Handlers<typeof McpAgent>> {
  return {
    async undeployService(req) {
      if (!req.name) throw invalidArgument("service name is required");
      if (req.component)
        throw invalidArgument(
          `undeploy works on whole services; to drop ${req.name}/${req.component}, remove it from the definition and deploy`,
        );
      const results = await undeployService(ctx, req.name);
      void pruneVmCache(ctx);
      return { results };
    },
  };
}
