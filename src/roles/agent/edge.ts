// Edge routes on an edge agent (architecture-v2 "Edge Routing", step 10): SetupEdgeRoute checks
// the backend is an internal-zone name that resolves inside [edge] allowed_backend_cidrs (the
// Tailnet range), gets a certificate for the PUBLIC hostname only from Metacrypt, registers an
// L7 route <listener> hostname → <backend ip>:<port> with backend_tls in mc-proxy, and records
// it in the registry's edge_routes. Setup is an idempotent upsert (a migration re-points the
// backend the same way); RemoveEdgeRoute undoes all three and is idempotent too.
import { promises as dns } from "node:dns";
import { isIP } from "node:net";
import type { McpAgent } from "../../gen/mcp/v1/mcp_pb.ts";
import { IntegrationError } from "../../integrations/types.ts";
import type { EdgeRouteRecord } from "../../registry/types.ts";
import { failedPrecondition, invalidArgument, unavailable } from "../../rpc/errors.ts";
import type { Handlers } from "../../rpc/service.ts";
import { inAnyCidr } from "./cidr.ts";
import type { AgentContext, EdgeSettings } from "./context.ts";

/** The internal zone every edge backend must live in (architecture-v2 "Edge Route Validation"). */
export const INTERNAL_ZONE = "svc.mcp.metacircular.net";
export const DEFAULT_EDGE: EdgeSettings = { allowedBackendCidrs: ["100.64.0.0/10"], listener: 443 };

const LABEL = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;

/** A fully qualified DNS name with at least two labels and a non-numeric top label. */
export function isDnsName(name: string): boolean {
  if (name.length === 0 || name.length > 253) return false;
  const labels = name.split(".");
  if (labels.length < 2 || !labels.every((l) => LABEL.test(l))) return false;
  return !/^\d+$/.test(labels[labels.length - 1]!);
}

const inZone = (name: string, zone: string) => name.endsWith(`.${zone}`);

/** The public hostname of a route: a DNS name outside the internal zone (internal names never go on edge certs). */
export function checkPublicHostname(raw: string): string {
  const h = raw.trim().toLowerCase();
  if (!h) throw invalidArgument("hostname is required");
  if (!isDnsName(h)) throw invalidArgument(`hostname "${raw}" is not a DNS name`);
  if (h === INTERNAL_ZONE || inZone(h, INTERNAL_ZONE))
    throw invalidArgument(`hostname "${raw}" is in the internal zone ${INTERNAL_ZONE}, not a public name`);
  return h;
}

function checkBackendHostname(raw: string): string {
  const h = raw.trim().toLowerCase();
  if (!h) throw invalidArgument("backend_hostname is required");
  if (!isDnsName(h) || !inZone(h, INTERNAL_ZONE))
    throw invalidArgument(`backend_hostname "${raw}" must be a name under .${INTERNAL_ZONE}`);
  return h;
}

const firstLine = (err: unknown) => ((err as Error)?.message ?? String(err)).split("\n")[0] ?? "";

/** A failed integration call: the service refused (4xx) → FAILED_PRECONDITION, else UNAVAILABLE. */
function integrationFailure(what: string, err: unknown) {
  const s = err instanceof IntegrationError ? err.status : undefined;
  const msg = `${what}: ${firstLine(err)}`;
  return s !== undefined && s >= 400 && s < 500 ? failedPrecondition(msg) : unavailable(msg);
}

/**
 * The backend's addresses: the MCNS zone's A/AAAA records when MCNS is configured and holds the
 * name, else this node's resolver. Throws FAILED_PRECONDITION when nothing resolves.
 */
export async function resolveBackend(ctx: AgentContext, hostname: string): Promise<string[]> {
  const problems: string[] = [];
  const registrar = ctx.settings.integrations?.dns;
  if (registrar && inZone(hostname, registrar.zone)) {
    const rel = hostname.slice(0, -(registrar.zone.length + 1));
    try {
      const ips = (await registrar.listRecords())
        .filter((r) => (r.type === "A" || r.type === "AAAA") && (r.name === rel || r.name === hostname))
        .map((r) => r.value)
        .filter((v) => isIP(v) !== 0);
      if (ips.length > 0) return ips;
      problems.push(`mcns: no A record for ${hostname}`);
    } catch (err) {
      problems.push(firstLine(err));
    }
  }
  try {
    const res = await dns.lookup(hostname, { all: true });
    if (res.length > 0) return res.map((r) => r.address);
  } catch (err) {
    problems.push(`dns: ${(err as NodeJS.ErrnoException).code ?? firstLine(err)}`);
  }
  throw failedPrecondition(`cannot resolve backend ${hostname} (${problems.join("; ")})`);
}

function toProto(r: EdgeRouteRecord) {
  return {
    hostname: r.hostname,
    backendHostname: r.backendHostname,
    backendPort: r.backendPort,
    certSerial: r.certSerial,
    certExpires: r.certExpires ? r.certExpires.toISOString() : "",
  };
}

export function edgeHandlers(ctx: AgentContext): Partial<Handlers<typeof McpAgent>> {
  const edge = () => ctx.settings.edge ?? DEFAULT_EDGE;
  return {
    async setupEdgeRoute(req) {
      const hostname = checkPublicHostname(req.hostname);
      const backendHostname = checkBackendHostname(req.backendHostname);
      if (!Number.isInteger(req.backendPort) || req.backendPort < 1 || req.backendPort > 65535)
        throw invalidArgument(`backend_port: expected 1-65535, got ${req.backendPort}`);
      if (!req.backendTls)
        throw invalidArgument("backend_tls must be true: edge traffic to the backend is always TLS");
      const { proxy, certs } = ctx.settings.integrations ?? {};
      if (!certs) throw failedPrecondition("metacrypt is not configured on edge node");
      if (!proxy) throw failedPrecondition("mc-proxy is not configured on edge node");
      const { allowedBackendCidrs, listener } = edge();
      return ctx.locks.run(`edge:${hostname}`, async () => {
        const ips = await resolveBackend(ctx, backendHostname);
        const ip = ips.find((a) => inAnyCidr(allowedBackendCidrs, a));
        if (!ip)
          throw failedPrecondition(
            `backend ${backendHostname} resolves to ${ips.join(", ")}, outside the allowed backend ranges (${allowedBackendCidrs.join(", ")})`,
          );
        let cert: Awaited<ReturnType<typeof certs.ensureCert>>;
        try {
          cert = await certs.ensureCert(hostname);
        } catch (err) {
          throw integrationFailure(`certificate for ${hostname}`, err);
        }
        const backend = ip.includes(":") ? `[${ip}]:${req.backendPort}` : `${ip}:${req.backendPort}`;
        try {
          await proxy.addRoute({
            listener,
            hostname,
            backend,
            mode: "l7",
            tlsCert: cert.certPath,
            tlsKey: cert.keyPath,
            backendTls: true,
          });
        } catch (err) {
          throw integrationFailure(`mc-proxy route ${listener} ${hostname}`, err);
        }
        ctx.registry.upsertEdgeRoute({
          hostname,
          backendHostname,
          backendPort: req.backendPort,
          certSerial: cert.serial,
          certExpires: cert.notAfter,
        });
        ctx.logger.info(
          { hostname, backend, backendHostname, cert: cert.reused ? "reused" : "issued" },
          "edge route set up",
        );
        return {};
      });
    },

    async removeEdgeRoute(req) {
      const hostname = checkPublicHostname(req.hostname);
      const { proxy, certs } = ctx.settings.integrations ?? {};
      return ctx.locks.run(`edge:${hostname}`, async () => {
        // Route first: mc-proxy must not serve with a cert that is about to go.
        try {
          await proxy?.removeRoute(edge().listener, hostname);
        } catch (err) {
          throw integrationFailure(`mc-proxy route ${edge().listener} ${hostname}`, err);
        }
        try {
          await certs?.removeCert(hostname);
        } catch (err) {
          throw integrationFailure(`certificate for ${hostname}`, err);
        }
        if (ctx.registry.deleteEdgeRoute(hostname)) ctx.logger.info({ hostname }, "edge route removed");
        return {};
      });
    },

    async listEdgeRoutes() {
      return { routes: ctx.registry.listEdgeRoutes().map(toProto) };
    },
  };
}
