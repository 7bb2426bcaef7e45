// Plans before changes: what `deploy --dry-run` and `sync --dry-run` compare. The spec a node has
// deployed (its agent's registry, GetServiceSpec) against the definition as the node would store
// it, field by field (component/spec-diff.ts renders the lines).
import { defToSpec, specToDef } from "../../component/proto.ts";
import { changeJson, diffSpecs, renderChanges, type SpecChange } from "../../component/spec-diff.ts";
import type { ServiceDef } from "../../config/service.ts";
import type { ServiceSpec } from "../../gen/mcp/v1/mcp_pb.ts";
import { Code } from "../../rpc/wire.ts";
import type { AgentClient } from "./context.ts";

/** What the node has for a service: its deployed spec, nothing, or why it could not say. */
export type Deployed =
  | { state: "deployed"; def: ServiceDef }
  | { state: "absent" }
  | { state: "unreachable" | "unknown"; error: string };

export interface Plan {
  deployed: Deployed;
  changes: SpecChange[];
  /** The stored text differs although no field does (only the order of components or env entries). */
  reordered: boolean;
}

const firstLine = (err: unknown) => ((err as Error)?.message ?? String(err)).split("\n")[0] ?? "";

/**
 * The definition as a node stores it: through the wire mapping and the node's validation (what the
 * wire does not carry, such as [build], is not part of a deployed spec, so not a change either).
 */
export function asSent(spec: ServiceSpec): ServiceDef {
  return specToDef(spec, `service ${spec.name}`);
}

/** The spec the node's registry holds for `service` (NOT_FOUND: not deployed there). */
export async function deployedSpec(client: AgentClient, service: string): Promise<Deployed> {
  let spec: ServiceSpec | undefined;
  try {
    spec = (await client.getServiceSpec({ name: service })).service;
  } catch (err) {
    const code = (err as { code?: unknown }).code;
    if (code === Code.NOT_FOUND) return { state: "absent" };
    return { state: code === Code.UNAVAILABLE ? "unreachable" : "unknown", error: firstLine(err) };
  }
  if (!spec) return { state: "absent" };
  try {
    return { state: "deployed", def: specToDef(spec, `the deployed spec of ${service}`) };
  } catch (err) {
    // Stored under an older schema the node's agent still sends as it is.
    return { state: "unknown", error: firstLine(err) };
  }
}

/**
 * The plan for `def` against what the node has. With `component` (a `<svc>/<comp>` deploy, which
 * runs only that component), the other components' changes are left out: they are not deployed.
 */
export function makePlan(deployed: Deployed, def: ServiceDef, component?: string): Plan {
  if (deployed.state !== "deployed") return { deployed, changes: [], reordered: false };
  const changes = diffSpecs(deployed.def, def).filter(
    (c) => component === undefined || c.path[0] !== "components" || c.path[1] === component,
  );
  return {
    deployed,
    changes,
    reordered:
      component === undefined && changes.length === 0 && JSON.stringify(deployed.def) !== JSON.stringify(def),
  };
}

/**
 * The lines before a dry run's argv (deploy) or after its table (sync, where the node holds the
 * spec sync "recorded" rather than "deployed").
 */
export function planLines(p: Plan, node: string, held: "deployed" | "recorded" = "deployed"): string[] {
  switch (p.deployed.state) {
    case "absent":
      return [`not ${held} on ${node} yet: everything is new`];
    case "unreachable":
    case "unknown":
      return [`cannot compare with the spec ${held} on ${node}: ${p.deployed.error}`];
  }
  if (p.changes.length === 0)
    return [
      p.reordered
        ? `no field changes against the spec ${held} on ${node} (only the order of entries differs)`
        : `no changes against the spec ${held} on ${node}`,
    ];
  return [`changes against the spec ${held} on ${node}:`, ...renderChanges(p.changes)];
}

/** For `--json`: deployed is "deployed", "absent" or "unknown" (with the reason). */
export function planJson(p: Plan) {
  const d = p.deployed;
  return {
    deployed: d.state === "deployed" || d.state === "absent" ? d.state : "unknown",
    ...(d.state === "unreachable" || d.state === "unknown" ? { error: d.error } : {}),
    changes: p.changes.map(changeJson),
    ...(p.reordered ? { reordered: true } : {}),
  };
}

/** The definition through the wire mapping (a loaded file's, for sync). */
export function defAsSent(def: ServiceDef): ServiceDef {
  return asSent(defToSpec(def));
}
