// Edge routing rules the master enforces before anything is deployed (architecture-v2 "Edge
// Route Validation"): a public hostname must equal an allowed domain or end with "." + one
// (label matching: "evilmetacircular.net" is not under "metacircular.net"); the backend is the
// service's name in the internal zone; the edge node is a healthy node with role "edge".
import type { ServiceDef } from "../../config/service.ts";
import type { NodeView } from "./placement.ts";

export const INTERNAL_ZONE = "svc.mcp.metacircular.net";

const LABEL = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;

/** Returns why `hostname` may not be published, or null when it may. */
export function validatePublicHostname(hostname: string, allowedDomains: readonly string[]): string | null {
  const h = hostname.toLowerCase();
  if (h !== hostname) return `public hostname "${hostname}" must be lowercase`;
  if (h.length === 0 || h.length > 253 || !h.split(".").every((l) => LABEL.test(l))) {
    return `public hostname "${hostname}" is not a valid DNS name`;
  }
  if (h === INTERNAL_ZONE || h.endsWith(`.${INTERNAL_ZONE}`)) {
    return `public hostname "${hostname}" is in the internal zone ${INTERNAL_ZONE}`;
  }
  if (allowedDomains.length === 0) {
    return `public hostname "${hostname}" refused: the master has no allowed domains ([edge] allowed_domains)`;
  }
  const ok = allowedDomains.some((d) => h === d || h.endsWith(`.${d}`));
  return ok
    ? null
    : `public hostname "${hostname}" is not under an allowed domain (${allowedDomains.join(", ")})`;
}

/** The internal name the edge forwards to: `<service>.svc.mcp.metacircular.net`. */
export function backendHostname(service: string): string {
  return `${service}.${INTERNAL_ZONE}`;
}

export interface PublicRoute {
  component: string;
  hostname: string;
  /** The worker mc-proxy listener port the edge connects to. */
  port: number;
}

/** Public routes of a definition (optionally of one component); hostnames each once. */
export function publicRoutes(def: ServiceDef, component?: string): PublicRoute[] {
  const out: PublicRoute[] = [];
  const seen = new Set<string>();
  for (const c of def.components) {
    if (component && c.name !== component) continue;
    for (const r of c.routes) {
      if (!r.public) continue;
      const hostname = r.hostname ?? "";
      if (seen.has(hostname)) continue;
      seen.add(hostname);
      out.push({ component: c.name, hostname, port: r.port });
    }
  }
  return out;
}

/** Every reason the definition's public routes cannot be set up (empty = all fine). */
export function publicRouteErrors(def: ServiceDef, allowedDomains: readonly string[]): string[] {
  const errors: string[] = [];
  for (const r of publicRoutes(def)) {
    if (!r.hostname) {
      errors.push(
        `component ${r.component}: a public route needs a hostname (e.g. ${def.name}.<allowed domain>)`,
      );
      continue;
    }
    const e = validatePublicHostname(r.hostname, allowedDomains);
    if (e) errors.push(e);
  }
  return errors;
}

/** The edge node for new public routes: healthy role "edge", first by name. */
export function pickEdgeNode(nodes: readonly NodeView[]): { node: string } | { error: string } {
  const edges = nodes.filter((n) => n.role === "edge");
  const healthy = edges.filter((n) => n.status === "healthy").sort((a, b) => (a.name < b.name ? -1 : 1));
  if (healthy[0]) return { node: healthy[0].name };
  return {
    error:
      edges.length === 0
        ? "no edge node is registered"
        : `no healthy edge node (${edges.map((e) => e.name).join(", ")})`,
  };
}
