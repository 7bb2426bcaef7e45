// Host ports for routes: which address they are published on (the node address), whether a port
// is really free there, and allocating one per route through the registry (persisted, so a
// redeploy, a start after stop and a recover all publish the same port). What a container then
// gets (publish specs, $PORT*) is route-ports.ts's job; this module only decides the numbers.
import { isIP, isIPv6 } from "node:net";
import { containerSpec } from "../../component/container.ts";
import type { ComponentDef } from "../../config/service.ts";
import { isAnyAddr, parseListenAddress } from "../../config/specs.ts";
import { type Registry, RegistryError } from "../../registry/index.ts";
import type { ContainerSpec } from "../../runtime/runtime.ts";
import type { AgentSettings } from "./context.ts";
import { specKeyOf } from "./deploy-plan.ts";
import { DEFAULT_ROUTE_BIND, type RoutePort, withRoutePorts } from "./route-ports.ts";

/** A route key in port_allocations and component_routes: the route's name, "" for the unnamed one. */
export function routeKey(r: { name?: string | undefined }): string {
  return r.name ?? "";
}

/**
 * The node address when `[agent] address` is absent: the host of server.grpc_addr when that is
 * one usable IP, else loopback (a wildcard or a host name cannot be a publish address or an A
 * record). `fallback` says the grpc host was not usable, so the daemon can tell the operator.
 */
export function defaultNodeAddress(grpcAddr: string): { address: string; fallback: boolean } {
  let host: string;
  try {
    host = parseListenAddress(grpcAddr).host;
  } catch {
    return { address: DEFAULT_ROUTE_BIND, fallback: true };
  }
  if (host === "localhost") return { address: DEFAULT_ROUTE_BIND, fallback: false };
  if (isIP(host) !== 0 && !isAnyAddr(host)) return { address: host, fallback: false };
  return { address: DEFAULT_ROUTE_BIND, fallback: true };
}

/** The address route ports are published and probed on (loopback when none is set). */
export function nodeAddressOf(settings: Pick<AgentSettings, "nodeAddress"> | undefined): string {
  return settings?.nodeAddress || DEFAULT_ROUTE_BIND;
}

/** [agent] port_range's default (SPEC §3.3). */
export const DEFAULT_PORT_RANGE: readonly [number, number] = [10000, 60000];

/** The range host ports come from; the default when settings carry none (partial test contexts). */
export function portRangeOf(
  settings: Pick<AgentSettings, "portRange"> | undefined,
): readonly [number, number] {
  return settings?.portRange ?? DEFAULT_PORT_RANGE;
}

/** The host part of a podman publish spec: IPv6 goes in brackets ("[fd00::1]:10000:10000"). */
export function publishHost(address: string): string {
  return isIPv6(address) ? `[${address}]` : address;
}

/**
 * The spec a component runs as: its own fields plus its route ports on the node address, its
 * owner (service and component) and the key of all that (deploy-plan.ts), which every container
 * the agent creates carries as labels.
 */
export function runSpec(
  settings: Pick<AgentSettings, "nodeAddress">,
  service: string,
  c: ComponentDef,
  routes: readonly RoutePort[],
): ContainerSpec {
  const spec = withRoutePorts(containerSpec(service, c), routes, publishHost(nodeAddressOf(settings)));
  return { ...spec, owner: { service, component: c.name }, specKey: specKeyOf(c, spec) };
}

/** Why no port could be probed at all: the address is not this host's, or similar. */
export class HostPortError extends Error {
  override name = "HostPortError";
}

/**
 * Whether a TCP listener can bind host:port right now. Synchronous on purpose: the registry asks
 * inside its write transaction (Bun.listen binds before it returns). A port in use or one this
 * user may not bind is "not free"; an address the host does not have fails loudly instead of
 * making every port of the range look taken.
 */
export function isPortFree(host: string, port: number): boolean {
  let listener: { stop(closeActive?: boolean): void } | undefined;
  try {
    listener = Bun.listen({ hostname: host, port, socket: { data() {} } });
    return true;
  } catch (err) {
    const code = (err as { code?: string }).code;
    if (code === "EADDRINUSE" || code === "EACCES") return false;
    if (code === "EADDRNOTAVAIL")
      throw new HostPortError(`node address ${host} is not an address of this host (see [agent] address)`);
    throw new HostPortError(`cannot probe ${host}:${port}: ${(err as Error).message.split("\n")[0]}`);
  } finally {
    listener?.stop(true);
  }
}

export interface RouteOwner {
  name: string;
  routes: readonly { name?: string | undefined }[];
}

/**
 * Host port per route key of the component: the one allocated earlier, else the lowest port of
 * `range` no route holds and nothing listens on at `host`. Persisted (in the caller's transaction
 * when there is one).
 */
export function allocateRoutePorts(
  registry: Pick<Registry, "allocatePort">,
  service: string,
  c: RouteOwner,
  range: readonly [number, number],
  host: string,
  isFree: (host: string, port: number) => boolean = isPortFree,
): Map<string, number> {
  const out = new Map<string, number>();
  for (const r of c.routes) {
    const key = routeKey(r);
    if (out.has(key)) continue;
    try {
      out.set(
        key,
        registry.allocatePort(service, c.name, key, range, (p) => isFree(host, p)),
      );
    } catch (err) {
      if (!(err instanceof RegistryError) || !err.message.startsWith("no free host port")) throw err;
      const what = key ? `route ${key}` : "its unnamed route";
      throw new HostPortError(
        `no free host port in ${range[0]}-${range[1]} on ${host} for ${service}/${c.name} ${what}`,
      );
    }
  }
  return out;
}

class Rollback extends Error {}

/**
 * The ports allocateRoutePorts would give each component (by name), without keeping them (dry
 * run): the same choice, made for all of them inside one transaction that is then rolled back,
 * so two components are never shown the same new port.
 */
export function previewRoutePorts(
  registry: Pick<Registry, "allocatePort" | "withTransaction">,
  service: string,
  comps: readonly RouteOwner[],
  range: readonly [number, number],
  host: string,
  isFree: (host: string, port: number) => boolean = isPortFree,
): Map<string, Map<string, number>> {
  let out = new Map<string, Map<string, number>>();
  try {
    registry.withTransaction(() => {
      out = new Map(
        comps.map((c) => [c.name, allocateRoutePorts(registry, service, c, range, host, isFree)]),
      );
      throw new Rollback();
    });
  } catch (err) {
    if (!(err instanceof Rollback)) throw err;
  }
  return out;
}
