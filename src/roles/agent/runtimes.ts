// The node's runtimes as the agent uses them: the router over every runtime it has (name-only
// calls find a container's runtime kind in the registry), and the refusals that keep a component
// off a node whose runtimes cannot run it. A refusal is one line naming the component, checked
// before anything is recorded, allocated or created.
import type { ComponentDef } from "../../config/service.ts";
import type { Registry } from "../../registry/index.ts";
import { failedPrecondition } from "../../rpc/errors.ts";
import { RuntimeRouter } from "../../runtime/router.ts";
import type { Runtime, RuntimeCapabilities } from "../../runtime/runtime.ts";
import type { AgentContext, AgentSettings } from "./context.ts";

/**
 * The router the agent context holds: the container runtime, and the unikernel runtime when the
 * node offers it (`unikernel`: configured and QEMU answered; see startAgent).
 */
export function nodeRuntimes(
  settings: Pick<AgentSettings, "runtime" | "nodeName">,
  registry: Registry,
  unikernel?: Runtime,
): RuntimeRouter {
  return new RuntimeRouter({
    runtimes: unikernel ? [settings.runtime, unikernel] : [settings.runtime],
    kindOf: (name) => registry.runtimeOfContainer(name),
    node: settings.nodeName,
  });
}

/**
 * Why this node has no runtime for component `service/c`, in one line, or null when it has:
 * `component web/api: runtime "unikernel" is not available on node local (has: container)`.
 */
export function runtimeRefusal(
  ctx: Pick<AgentContext, "runtime">,
  service: string,
  c: { name: string; runtime: string },
): string | null {
  const missing = ctx.runtime.unavailable(c.runtime);
  return missing ? `component ${service}/${c.name}: ${missing}` : null;
}

/**
 * Why a component's runtime cannot do `capability` (exec, logs -f), in one line naming the
 * component, or null when it can (or when the runtime is absent: runtimeRefusal says that).
 */
export function capabilityRefusal(
  ctx: Pick<AgentContext, "runtime">,
  service: string,
  c: { name: string; runtime: string },
  capability: keyof RuntimeCapabilities,
): string | null {
  const no = ctx.runtime.lacks(c.runtime, capability);
  return no ? `component ${service}/${c.name}: ${no}` : null;
}

/**
 * Why this node cannot run the definition of component `service/c`, or null when it can: its
 * runtime kind is absent, or what it declares needs a capability its runtime lacks (an exec
 * health check needs exec).
 */
export function componentRefusal(
  ctx: Pick<AgentContext, "runtime">,
  service: string,
  c: { name: string; runtime: string; health?: { type: string } | undefined },
): string | null {
  const missing = runtimeRefusal(ctx, service, c);
  if (missing) return missing;
  if (c.health?.type === "exec") {
    const no = capabilityRefusal(ctx, service, c, "exec");
    if (no) return `${no} (its health check is exec)`;
  }
  return null;
}

/**
 * Throws FAILED_PRECONDITION with the first refused component of `def`: the definition is valid,
 * this node is the wrong place for it (another node with that runtime may run it).
 */
export function requireRuntimes(
  ctx: Pick<AgentContext, "runtime">,
  def: { name: string; components: readonly ComponentDef[] },
): void {
  for (const c of def.components) {
    const why = componentRefusal(ctx, def.name, c);
    if (why) throw failedPrecondition(why);
  }
}
