// Route host ports as the container sees them: each route with an allocated host port is
// published as <bind>:<host>:<host> (the service listens on that same port inside) and handed to
// the container as $PORT (an unnamed route) or $PORT_<NAME>. One mapping, used by recover today
// and by deploy once it allocates ports, so a recreated container gets exactly what a deploy gave.
import type { RouteRecord } from "../../registry/types.ts";
import type { ContainerSpec } from "../../runtime/runtime.ts";

/** The fields a route needs here; both registry records and deploy-time allocations carry them. */
export type RoutePort = Pick<RouteRecord, "name" | "hostPort">;

/** Where route ports are published: mc-proxy runs on the same node and dials loopback. */
export const DEFAULT_ROUTE_BIND = "127.0.0.1";

/** "PORT" for an unnamed route, "PORT_<NAME>" (upper case, '-' → '_') for a named one. */
export function routeEnvName(name: string): string {
  return name ? `PORT_${name.toUpperCase().replace(/-/g, "_")}` : "PORT";
}

/** Routes that have a host port; 0 means "not allocated yet" and is skipped. */
function allocated(routes: readonly RoutePort[]): RoutePort[] {
  return routes.filter((r) => Number.isInteger(r.hostPort) && r.hostPort > 0 && r.hostPort <= 65535);
}

/**
 * "KEY=port" entries for the routes with a host port. A second unnamed route cannot have a
 * variable of its own: the first one keeps $PORT (definitions should name routes when there are several).
 */
export function routeEnv(routes: readonly RoutePort[]): string[] {
  const seen = new Set<string>();
  const out: string[] = [];
  for (const r of allocated(routes)) {
    const key = routeEnvName(r.name);
    if (seen.has(key)) continue;
    seen.add(key);
    out.push(`${key}=${r.hostPort}`);
  }
  return out;
}

/** "<bind>:<host>:<host>" publish specs for the routes with a host port. */
export function routePublish(routes: readonly RoutePort[], bind = DEFAULT_ROUTE_BIND): string[] {
  return [...new Set(allocated(routes).map((r) => `${bind}:${r.hostPort}:${r.hostPort}`))];
}

/**
 * The spec with route ports published and $PORT* injected. Injected variables replace a
 * same-named entry of the spec's env: the port MCP allocated and published is the one that works.
 */
export function withRoutePorts(
  spec: ContainerSpec,
  routes: readonly RoutePort[],
  bind = DEFAULT_ROUTE_BIND,
): ContainerSpec {
  const env = routeEnv(routes);
  if (env.length === 0) return spec;
  const keys = new Set(env.map((e) => e.slice(0, e.indexOf("="))));
  const keyOf = (e: string) => (e.includes("=") ? e.slice(0, e.indexOf("=")) : e);
  const ports = [...spec.ports];
  for (const p of routePublish(routes, bind)) if (!ports.includes(p)) ports.push(p);
  return {
    ...spec,
    ports,
    env: [...spec.env.filter((e) => !keys.has(keyOf(e))), ...env],
  };
}
