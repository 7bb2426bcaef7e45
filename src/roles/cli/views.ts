// What the CLI shows of the agents' answers, shared by the direct commands (deploy, lifecycle,
// undeploy, status) and their master-routed versions (via-master.ts): one JSON shape and one routes
// column whichever path answered.
import { timestampDate } from "@bufbuild/protobuf/wkt";
import type { ComponentInfo, ComponentResult } from "../../gen/mcp/v1/mcp_pb.ts";

/** The JSON of one component's deploy/lifecycle result. */
export function resultJson(r: ComponentResult) {
  return {
    component: r.name,
    success: r.success,
    error: r.error || undefined,
    version: r.version,
    steps: r.steps.map((s) => ({ step: s.step, ms: Number(s.durationMs), detail: s.detail || undefined })),
    warnings: r.warnings,
    argv: r.argv.length > 0 ? r.argv : undefined,
    rolledBackTo: r.rolledBackTo || undefined,
    unchanged: r.unchanged || undefined,
    reason: r.reason || undefined,
  };
}

/** The JSON of one component, shared by the direct and the master views (via-master.ts). */
export function componentJson(node: string, service: string, c: ComponentInfo) {
  return {
    node,
    service,
    component: c.name,
    image: c.image,
    desired: c.desiredState,
    observed: c.observedState,
    version: c.version,
    runtime: c.runtime || "container",
    memory: c.memory || undefined,
    started: c.started ? timestampDate(c.started).toISOString() : null,
    ports: c.ports,
    routes: c.routes.map((r) => ({
      name: r.name,
      port: r.port,
      mode: r.mode,
      hostname: r.hostname,
      hostPort: r.hostPort,
      public: r.public,
    })),
  };
}

/**
 * Compact routes for the status table: "rest:8443→10001 l7", the unnamed route as "8443→10001 l4",
 * "?" for a host port not allocated yet; "-" without routes.
 */
export function formatRoutes(
  routes: readonly Pick<ComponentInfo["routes"][number], "name" | "port" | "mode" | "hostPort">[],
): string {
  if (routes.length === 0) return "-";
  return routes
    .map((r) => `${r.name ? `${r.name}:` : ""}${r.port}→${r.hostPort > 0 ? r.hostPort : "?"} ${r.mode}`)
    .join(", ");
}

/** "unikernel 64m" for a component that is not a plain container; "" for a container. */
export function runtimeNote(c: Pick<ComponentInfo, "runtime" | "memory">): string {
  if (!c.runtime || c.runtime === "container") return "";
  return c.memory ? `${c.runtime} ${c.memory}` : c.runtime;
}

/**
 * The RUNTIMES column of `mcp node list`: the kinds a node runs ("container,unikernel"), "-" when
 * it has not reported them. Anything outside [a-z0-9-] is left out: an agent's words are not
 * written to the operator's terminal as they are.
 */
export function runtimesCell(kinds: readonly string[]): string {
  const shown = kinds.map((k) => k.replace(/[^a-z0-9-]/g, "")).filter((k) => k !== "");
  return shown.length > 0 ? shown.join(",") : "-";
}
