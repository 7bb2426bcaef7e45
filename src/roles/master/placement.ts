// Service placement (architecture-v2 "Placement Algorithm"), pure so it can be property-tested:
//   1. an explicit `node` wins (it must exist and must not be unhealthy),
//   2. tier "core" → the master's node (the node with role "master"),
//   3. otherwise the healthy worker with the fewest containers, ties broken by name.
// Unhealthy nodes never receive placements (v2 "Heartbeats"); a pinned or core service whose node
// is unhealthy is refused rather than silently moved, because its data lives on that node.
// "unknown" (not yet probed since the master started) is accepted for pinned/core services, so a
// restarted master can redeploy them before the first heartbeat; automatic placement waits for
// "healthy".
// Runtime kinds: a service goes only to a node whose reported runtimes include every kind its
// components need (a unikernel component → a node with the "unikernel" runtime); automatic
// placement picks among those, and a pinned or core node without one is refused, not overridden.
// A node that never reported its runtimes is taken to have "container" only.
import { normalizeRuntimeKind } from "../../config/runtime-kind.ts";
import type { NodeRole, NodeStatus } from "./store.ts";

export interface NodeView {
  name: string;
  role: NodeRole;
  status: NodeStatus;
  containers: number;
  /** The runtime kinds the node reported; null/absent = never reported ("container" assumed). */
  runtimes?: readonly string[] | null;
}

/** One component's runtime kind, as the service needs it. */
export interface RuntimeNeed {
  component: string;
  kind: string;
}

export interface PlacementRequest {
  name: string;
  node?: string;
  tier: string;
  /** What the service's components run as (runtimeNeeds); absent = containers only. */
  needs?: readonly RuntimeNeed[];
}

/** The runtime kind each component needs, from the definition (legacy words read as "container"). */
export function runtimeNeeds(components: readonly { name: string; runtime?: string }[]): RuntimeNeed[] {
  return components.map((c) => ({ component: c.name, kind: normalizeRuntimeKind(c.runtime ?? "") }));
}

/** The kinds a node can run: what it reported, else "container" alone. */
function kindsOf(n: NodeView): readonly string[] {
  return n.runtimes ?? ["container"];
}

function runtimesText(n: NodeView): string {
  if (!n.runtimes) return "not reported its runtimes yet";
  return `runtimes ${n.runtimes.join(", ") || "none"}`;
}

/**
 * Why `node` cannot run `service` (the first component whose kind it lacks), in one line, or null:
 * `service web: component vm runs as a unikernel; node "b" has runtimes container`.
 */
export function runtimeMisfit(service: PlacementRequest, node: NodeView): string | null {
  const has = kindsOf(node);
  const missing = (service.needs ?? []).find((need) => !has.includes(need.kind));
  if (!missing) return null;
  return `service ${service.name}: component ${missing.component} runs as a ${missing.kind}; node "${node.name}" has ${runtimesText(node)}`;
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

/** Nodes named in a refusal, so the line stays one readable line on a large fleet. */
const MAX_LISTED = 5;

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
    const misfit = runtimeMisfit(service, n);
    return misfit ? { error: misfit } : { node: n.name };
  }
  if (service.tier === "core") {
    const name = masterNode || masterNodeOf(nodes);
    const n = name ? find(name) : undefined;
    if (!n)
      return { error: `service ${service.name}: tier "core" needs a node with role "master"; none is known` };
    if (n.status === "unhealthy")
      return { error: `service ${service.name}: master node "${n.name}" is unhealthy` };
    const misfit = runtimeMisfit(service, n);
    return misfit ? { error: misfit } : { node: n.name };
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
  const fitting = eligible.filter((n) => runtimeMisfit(service, n) === null);
  if (fitting.length === 0) {
    const has = (n: NodeView) => kindsOf(n);
    const need = (service.needs ?? []).find((x) => eligible.some((n) => !has(n).includes(x.kind)))!;
    const seen = [...eligible]
      .sort(byName)
      .map((n) => `${n.name}: ${n.runtimes ? n.runtimes.join(", ") || "none" : "not reported"}`);
    if (seen.length > MAX_LISTED) seen.splice(MAX_LISTED, seen.length, `${seen.length - MAX_LISTED} more`);
    return {
      error: `service ${service.name}: component ${need.component} runs as a ${need.kind}; no healthy worker node has that runtime (${seen.join("; ")})`,
    };
  }
  const best = [...fitting].sort((a, b) => a.containers - b.containers || byName(a, b))[0]!;
  return { node: best.name };
}
