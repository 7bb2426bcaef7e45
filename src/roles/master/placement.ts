// Service placement (architecture-v2 "Placement Algorithm"), pure so it can be property-tested:
//   1. an explicit `node` wins (it must exist and must not be unhealthy),
//   2. tier "core" → the master's node (the node with role "master"),
//   3. otherwise the healthy worker with the fewest containers, ties broken by name.
// Unhealthy nodes never receive placements (v2 "Heartbeats"); a pinned or core service whose node
// is unhealthy is refused rather than silently moved, because its data lives on that node.
// "unknown" (not yet probed since the master started) is accepted for pinned/core services, so a
// restarted master can redeploy them before the first heartbeat; automatic placement waits for
// "healthy".
import type { NodeRole, NodeStatus } from "./store.ts";

export interface NodeView {
  name: string;
  role: NodeRole;
  status: NodeStatus;
  containers: number;
}

export interface PlacementRequest {
  name: string;
  node?: string;
  tier: string;
}

export type PlacementResult = { node: string } | { error: string };

/** The node that runs the master (role "master"); the first by name if several claim it. */
export function masterNodeOf(nodes: readonly NodeView[]): string {
  return (
    nodes
      .filter((n) => n.role === "master")
      .map((n) => n.name)
      .sort()[0] ?? ""
  );
}

function byName(a: NodeView, b: NodeView): number {
  return a.name < b.name ? -1 : a.name > b.name ? 1 : 0;
}

/**
 * Picks the node for `service`. `masterNode` is the master's own node name ("" = derive it from
 * the node with role "master").
 */
export function place(
  service: PlacementRequest,
  nodes: readonly NodeView[],
  masterNode = "",
): PlacementResult {
  const find = (name: string) => nodes.find((n) => n.name === name);
  if (service.node) {
    const n = find(service.node);
    if (!n) return { error: `service ${service.name}: node "${service.node}" is not known to the master` };
    if (n.status === "unhealthy") return { error: `service ${service.name}: node "${n.name}" is unhealthy` };
    return { node: n.name };
  }
  if (service.tier === "core") {
    const name = masterNode || masterNodeOf(nodes);
    const n = name ? find(name) : undefined;
    if (!n)
      return { error: `service ${service.name}: tier "core" needs a node with role "master"; none is known` };
    if (n.status === "unhealthy")
      return { error: `service ${service.name}: master node "${n.name}" is unhealthy` };
    return { node: n.name };
  }
  const eligible = nodes.filter((n) => n.role === "worker" && n.status === "healthy");
  if (eligible.length === 0) {
    const workers = nodes.filter((n) => n.role === "worker").length;
    return {
      error:
        workers === 0
          ? `service ${service.name}: no worker node is registered`
          : `service ${service.name}: no healthy worker node (${workers} known, none healthy)`,
    };
  }
  const best = [...eligible].sort((a, b) => a.containers - b.containers || byName(a, b))[0]!;
  return { node: best.name };
}
