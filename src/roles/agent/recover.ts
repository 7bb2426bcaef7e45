// Recover (reference commit "Recreates containers from the agent's SQLite registry when podman's
// database is lost"): for every component whose desired state is `running` but that has no
// running container, remove whatever is left under its name and recreate it from the registry's
// stored spec, with its route host ports published and $PORT* injected, then re-register it with
// the integrations (routes, certs). Never pulls: after a disaster the image registry may be one of
// the things that is down, so a missing image fails that component and the rest go on.
import type { MessageInitShape } from "@bufbuild/protobuf";
import { containerName } from "../../component/container.ts";
import { recordToDef } from "../../component/registry.ts";
import type { McpAgent, RecoverResultSchema } from "../../gen/mcp/v1/mcp_pb.ts";
import type { ComponentRecord } from "../../registry/types.ts";
import { notFound } from "../../rpc/errors.ts";
import type { Handlers } from "../../rpc/service.ts";
import type { AgentContext } from "./context.ts";
import { runComponentHook } from "./hooks.ts";
import { requireMountsConfined } from "./host-access.ts";
import { runSpec } from "./host-ports.ts";
import { describeClaim } from "./ownership.ts";
import { runtimeRefusal } from "./runtimes.ts";

type Result = MessageInitShape<typeof RecoverResultSchema>;

export const RECREATED = "recreated";
export const ALREADY_RUNNING = "already running";
export const SKIPPED_STOPPED = "skipped (desired stopped)";
export const FAILED = "failed";

const firstLine = (err: unknown) => ((err as Error)?.message ?? String(err)).split("\n")[0] ?? "";

async function recoverComponent(ctx: AgentContext, service: string, c: ComponentRecord): Promise<Result> {
  const base = { service, component: c.name };
  if (c.desiredState === "stopped") return { ...base, action: SKIPPED_STOPPED, success: true };
  // A component of a runtime this node does not have is left alone, never run by another.
  const refused = runtimeRefusal(ctx, service, c);
  if (refused) return { ...base, action: FAILED, success: false, error: refused };
  const name = containerName(service, c.name);
  try {
    const existing = await ctx.runtime.inspect(name);
    // Another service's container under this name (by its label) is never removed or taken over;
    // one without labels (created before them) is recovered from the registry as before.
    if (existing?.owner && existing.owner.service !== service)
      throw new Error(
        `container ${name} belongs to ${describeClaim({ owner: existing.owner, by: "label" })}, not to ${service}/${c.name}; left as it is`,
      );
    if (existing?.state === "running") {
      ctx.registry.setObservedState(service, c.name, "running");
      return { ...base, action: ALREADY_RUNNING, success: true };
    }
    // Checked before anything is removed: what cannot be rebuilt is left as it is, and a mount a
    // swapped symlink would widen is not recreated.
    requireMountsConfined(ctx, service, [recordToDef(c)]);
    if (!(await ctx.runtime.imageExists(c.image, c.runtime)))
      throw new Error(`image ${c.image} is not in the local store (recover never pulls)`);
    // Always, even when inspect saw nothing: after podman loses its database its storage can
    // still hold a container under this name, and `run` would fail with "name already in use".
    await ctx.runtime.remove(name, true);
    await ctx.runtime.run(runSpec(ctx.settings, service, recordToDef(c), c.routes));
    const details = await ctx.runtime.inspect(name);
    const observed = details?.state ?? "removed";
    ctx.registry.setObservedState(service, c.name, observed);
    if (observed !== "running")
      return {
        ...base,
        action: FAILED,
        success: false,
        error: `container ${name} is ${observed} after start`,
      };
    const hookFailure = await runComponentHook(ctx, "onDeployed", service, c.name);
    if (hookFailure) return { ...base, action: RECREATED, success: false, error: hookFailure };
    return { ...base, action: RECREATED, success: true };
  } catch (err) {
    // The registry records what is really there, never the success that did not happen.
    const details = await ctx.runtime.inspect(name).catch(() => null);
    const ours = !details?.owner || details.owner.service === service;
    try {
      ctx.registry.setObservedState(service, c.name, (ours ? details?.state : undefined) ?? "removed");
    } catch {
      // the component vanished from the registry meanwhile (undeploy): nothing to record
    }
    return { ...base, action: FAILED, success: false, error: firstLine(err) };
  }
}

function logResult(ctx: AgentContext, r: Result): void {
  const fields = { service: r.service, component: r.component, action: r.action };
  if (r.success) ctx.logger.info(fields, `recover ${r.service}/${r.component}: ${r.action}`);
  else ctx.logger.error({ ...fields, error: r.error }, `recover ${r.service}/${r.component}: ${r.error}`);
}

/**
 * Recovers every service (or the one named), one service at a time, each under its service lock
 * so a concurrent deploy or stop of the same service never interleaves. Components with desired
 * state `ignore` (containers MCP does not manage) get no result.
 */
export async function recoverServices(ctx: AgentContext, service?: string): Promise<Result[]> {
  const names = service ? [service] : ctx.registry.listServices().map((s) => s.name);
  if (service && !ctx.registry.getService(service))
    throw notFound(`unknown service "${service}" on node ${ctx.settings.nodeName}`);
  const results: Result[] = [];
  for (const name of names) {
    await ctx.locks.run(name, async () => {
      // Re-read under the lock: a deploy that ran meanwhile may have changed the spec.
      const svc = ctx.registry.getService(name);
      for (const c of svc?.components ?? []) {
        if (c.desiredState === "ignore") continue;
        const r = await recoverComponent(ctx, name, c);
        logResult(ctx, r);
        results.push(r);
      }
    });
  }
  return results;
}

/** recover_on_start: runs before the boot sequence and the monitor; logs, never throws. */
export async function recoverOnStart(ctx: AgentContext): Promise<void> {
  if (!ctx.settings.recoverOnStart) return;
  try {
    const results = await recoverServices(ctx);
    const count = (a: string) => results.filter((r) => r.success && r.action === a).length;
    ctx.logger.info(
      {
        recreated: count(RECREATED),
        alreadyRunning: count(ALREADY_RUNNING),
        skipped: count(SKIPPED_STOPPED),
        failed: results.filter((r) => !r.success).length,
      },
      "recover on start finished",
    );
  } catch (err) {
    ctx.logger.error({ err: firstLine(err) }, "recover on start failed");
  }
}

export function recoverHandlers(ctx: AgentContext): Partial<Handlers<typeof McpAgent>> {
  return {
    async recover(req) {
      return { results: await recoverServices(ctx, req.service || undefined) };
    },
  };
}
