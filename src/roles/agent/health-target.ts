// Where a component's declared health check looks: the pure mapping from a registry record's
// `[components.health]` to an address (tcp/http) or an argv to exec in the container. Shared by
// the deploy health gate and the monitor so both check exactly the same thing.
import { isAnyAddr, parsePortSpec } from "../../config/specs.ts";
import type { ComponentRecord } from "../../registry/types.ts";

export type HealthTarget =
  | { kind: "tcp" | "http"; host: string; port: number; path: string }
  | { kind: "exec"; cmd: string[] };

/** The record's health check cannot be resolved (a route without a host port, say); one line. */
export class HealthTargetError extends Error {
  override name = "HealthTargetError";
}

/**
 * Resolves the check target of a record with `health` set (throws HealthTargetError otherwise).
 * route → that route's host port on the node address; port → the host port publishing that
 * container port (on its bind address, or the node address when bound to every interface), else
 * the port itself on the node address (host networking, or a port published under that number).
 */
export function healthTarget(
  record: Pick<ComponentRecord, "service" | "name" | "health" | "ports" | "routes">,
  nodeAddress: string,
): HealthTarget {
  const h = record.health;
  const who = `${record.service}/${record.name}`;
  if (h === undefined) throw new HealthTargetError(`${who} declares no health check`);
  if (h.type === "exec") {
    if (h.cmd === undefined || h.cmd.length === 0)
      throw new HealthTargetError(`${who}: exec health check has no cmd`);
    return { kind: "exec", cmd: [...h.cmd] };
  }
  const path = h.type === "http" ? (h.path ?? "/") : "";
  if (h.route !== undefined) {
    const r = record.routes.find((x) => x.name === h.route);
    if (!r) throw new HealthTargetError(`${who}: health route "${h.route}" is not a route of the component`);
    if (!r.hostPort) throw new HealthTargetError(`${who}: health route "${h.route}" has no host port yet`);
    return { kind: h.type, host: nodeAddress, port: r.hostPort, path };
  }
  if (h.port === undefined) throw new HealthTargetError(`${who}: health check names neither port nor route`);
  for (const spec of record.ports) {
    let p: ReturnType<typeof parsePortSpec>;
    try {
      p = parsePortSpec(spec);
    } catch {
      continue; // validated on the way in; a bad stored spec cannot publish anything anyway
    }
    if (p.containerPort !== h.port || p.protocol === "udp") continue;
    const host = p.hostIp === undefined || isAnyAddr(p.hostIp) ? nodeAddress : p.hostIp;
    return { kind: h.type, host, port: p.hostPort, path };
  }
  return { kind: h.type, host: nodeAddress, port: h.port, path };
}

/** "tcp 127.0.0.1:8080", "http http://127.0.0.1:8080/healthz", "exec [cat, /ok]" for step details. */
export function describeTarget(t: HealthTarget): string {
  if (t.kind === "exec") return `exec ${JSON.stringify(t.cmd)}`;
  const hp = t.host.includes(":") ? `[${t.host}]:${t.port}` : `${t.host}:${t.port}`;
  return t.kind === "http" ? `http http://${hp}${t.path}` : `tcp ${hp}`;
}
