// Whose a container is. Every container the agent creates carries its owner (service and
// component) as labels (runtime.ts OWNER_LABELS, written by runSpec); the registry is the fallback
// for containers created before the labels existed. Deploy, sync, boot, adopt, recover and
// undeploy ask here before they claim, replace or remove a container under a name that another
// service's component may also have ("a" + "b-c" and "a-b" + "c" are both "a-b-c"), so that one
// service never reaches another's container, even when the registry lost track of it.
import { containerName } from "../../component/container.ts";
import type { Registry } from "../../registry/index.ts";
import { failedPrecondition } from "../../rpc/errors.ts";
import type { ContainerInfo, ContainerOwner } from "../../runtime/runtime.ts";
import type { AgentContext } from "./context.ts";

/**
 * Every component's container name must be its own: service "a" with component "b-c" and service
 * "a-b" with component "c" both run as "a-b-c", and then one service's stop, restart, logs or
 * runtime routing would act on the other's container. Refused before anything is recorded.
 */
export function requireOwnContainers(
  ctx: Pick<AgentContext, "registry">,
  def: { name: string; components: readonly { name: string }[] },
): void {
  for (const c of def.components) {
    const name = containerName(def.name, c.name);
    const other = ctx.registry.ownersOfContainer(name).find((o) => o.service !== def.name);
    if (other)
      throw failedPrecondition(
        `component ${def.name}/${c.name}: its container name ${name} is already the container of ${other.service}/${other.component}; rename one of them`,
      );
  }
}

/** Another service's claim on a container: by its label, or by the registry when it has none. */
export interface ForeignClaim {
  owner: ContainerOwner;
  by: "label" | "registry";
}

/** "a-b/c (by its label)": how a refusal names the owner. */
export function describeClaim(claim: ForeignClaim): string {
  return `${claim.owner.service}/${claim.owner.component} (by its ${claim.by === "label" ? "label" : "registry entry"})`;
}

/**
 * Who other than `service` owns the container `info` (its owner label first; without one, a
 * managed registry entry of another service), or null when nobody else does.
 */
export function foreignClaim(
  registry: Pick<Registry, "ownersOfContainer" | "getComponent">,
  service: string,
  name: string,
  labelled: ContainerOwner | undefined,
): ForeignClaim | null {
  if (labelled) return labelled.service === service ? null : { owner: labelled, by: "label" };
  const other = registry
    .ownersOfContainer(name)
    .find(
      (o) =>
        o.service !== service && registry.getComponent(o.service, o.component)?.desiredState !== "ignore",
    );
  return other ? { owner: other, by: "registry" } : null;
}

/** Whether the registry gives component `service/component` to MCP (a managed row, not a discovered one). */
function managedHere(registry: Registry, service: string, component: string): boolean {
  const row = registry.getComponent(service, component);
  return row !== null && row.desiredState !== "ignore";
}

export interface ContainerCheck {
  /**
   * Deploy replaces the container under each deployed component's name: one without owner labels
   * that the registry does not give to this service is someone else's (a hand-started container,
   * or MCP's from before a registry loss) and is refused, with adopt as the way to claim it.
   */
  unlabelled: "refuse" | "keep";
  /** The components that will be (re)created now; default all of the definition's. */
  deployed?: readonly string[];
  /** A listing already taken (sync checks many definitions against one). */
  containers?: readonly ContainerInfo[];
}

/**
 * Throws FAILED_PRECONDITION, one line naming the owner, when a container under one of `def`'s
 * component names exists and belongs to another service by its label (even if the registry does
 * not know that service), or, for deployed components with `unlabelled: "refuse"`, when it is
 * nobody's MCP container at all.
 */
export async function requireContainersFree(
  ctx: Pick<AgentContext, "registry" | "runtime">,
  def: { name: string; components: readonly { name: string }[] },
  check: ContainerCheck,
): Promise<void> {
  const list = check.containers ?? (await ctx.runtime.list());
  const byName = new Map(list.map((c) => [c.name, c]));
  const deployed = new Set(check.deployed ?? def.components.map((c) => c.name));
  for (const c of def.components) {
    const name = containerName(def.name, c.name);
    const there = byName.get(name);
    if (!there) continue;
    if (there.owner && there.owner.service !== def.name) {
      throw failedPrecondition(
        `component ${def.name}/${c.name}: container ${name} belongs to ${describeClaim({ owner: there.owner, by: "label" })}; rename one of them`,
      );
    }
    if (
      check.unlabelled === "refuse" &&
      deployed.has(c.name) &&
      !there.owner &&
      !managedHere(ctx.registry, def.name, c.name)
    ) {
      throw failedPrecondition(
        `component ${def.name}/${c.name}: container ${name} exists and is not MCP's (no owner label, not in the registry); claim it with mcp adopt ${def.name} or remove it first`,
      );
    }
  }
}
