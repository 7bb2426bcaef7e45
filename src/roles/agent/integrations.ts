// The platform side of a deploy (SPEC §5.5, reference "What Happens During Deploy"): composes the
// configured adapters (mc-proxy routes, Metacrypt certs, MCNS records) into the agent's
// IntegrationHooks. Before any container is touched, every L7 route gets its certificate (a cert
// error fails the deploy with nothing started); once the container runs, its routes are
// registered (hostname → <node address>:<host port>) and the service's A record points at this
// node; stop withdraws routes (and DNS when no component of the service is meant to run);
// undeploy removes routes, DNS and the certs. DNS deletes only this node's A record (its address):
// after a migration the service's record points at the destination and must survive the source's
// teardown. Each adapter is optional: an absent one is said
// once at startup and its steps are skipped. Re-running any teardown is a no-op (the adapters
// treat "already gone" as success).
import { existsSync } from "node:fs";
import { join } from "node:path";
import type { Logger } from "pino";
import type { AgentConfig } from "../../config/agent.ts";
import type { ComponentDef, ServiceDef } from "../../config/service.ts";
import { McnsClient } from "../../integrations/mcns.ts";
import { McProxyClient } from "../../integrations/mcproxy.ts";
import { MetacryptClient } from "../../integrations/metacrypt.ts";
import { fileToken } from "../../integrations/token.ts";
import type { Integrations, IssuedCertFiles, ProxyRoute } from "../../integrations/types.ts";
import type { ComponentRecord, ServiceRecord } from "../../registry/types.ts";
import { type HookStepResult, type IntegrationHooks, noIntegrations } from "./hooks.ts";

/** The internal zone a service's default hostname and A record live in (reference convention). */
export const DEFAULT_ZONE = "svc.mcp.metacircular.net";
/** Where mc-proxy reads L7 certificates (reference layout; [mcproxy] cert_dir overrides). */
export const DEFAULT_CERT_DIR = "/srv/mc-proxy/certs";
/** How long a certificate ensured by prepareDeploy is taken as-is by the following onDeployed. */
const PREPARED_TTL_MS = 10 * 60_000;

export interface PlatformOptions {
  logger: Logger;
  /** The address mc-proxy and DNS use to reach this node's published route ports (an IP for the A record). */
  nodeAddress: string;
  /** [mcproxy] cert_dir: where operator-placed L7 certs are looked up when Metacrypt is not configured. */
  certDir?: string;
}

/** The route fields both definitions and registry records carry. */
interface RouteLike {
  name?: string;
  port: number;
  mode: "l4" | "l7";
  hostname?: string;
  public?: boolean;
}

/**
 * The hostname this node's mc-proxy serves a route under: its own, else `<service>.<zone>`
 * (the name its A record resolves). A public route's hostname is the EDGE's (architecture v2
 * "Certificate Model"): the worker serves the internal name, which is what the edge forwards
 * to, and public names never appear on worker certs.
 */
export function routeHostname(
  service: string,
  r: Pick<RouteLike, "hostname" | "public">,
  zone = DEFAULT_ZONE,
): string {
  return (!r.public && r.hostname) || `${service}.${zone}`;
}

/** The L7 hostnames of a component's routes, each once. */
function l7Hostnames(service: string, routes: readonly RouteLike[], zone: string): string[] {
  return [...new Set(routes.filter((r) => r.mode === "l7").map((r) => routeHostname(service, r, zone)))];
}

const firstLine = (err: unknown) => ((err as Error)?.message ?? String(err)).split("\n")[0] ?? "";

/**
 * One step over several items: every item is tried (a teardown should remove what it can), the
 * step fails with the first error ("+N more" when several failed); details of the successes are
 * joined for the deploy output.
 */
async function step<T>(
  name: string,
  items: readonly T[],
  fn: (item: T) => Promise<string | undefined>,
): Promise<HookStepResult> {
  const t0 = performance.now();
  const errors: string[] = [];
  const details: string[] = [];
  for (const item of items) {
    try {
      const d = await fn(item);
      if (d) details.push(d);
    } catch (err) {
      errors.push(firstLine(err));
    }
  }
  const durationMs = performance.now() - t0;
  if (errors.length > 0) {
    const more = errors.length > 1 ? ` (+${errors.length - 1} more)` : "";
    return { step: name, success: false, error: `${errors[0]}${more}`, durationMs };
  }
  return { step: name, success: true, durationMs, detail: details.join(", ") };
}

/** Hooks doing the route/cert/DNS work with whichever adapters are configured. */
export function platformHooks(opts: PlatformOptions, integrations: Integrations): IntegrationHooks {
  const { proxy, certs, dns } = integrations;
  const zone = dns?.zone ?? DEFAULT_ZONE;
  const certDir = opts.certDir ?? DEFAULT_CERT_DIR;
  const log = opts.logger;
  // Certs ensured by prepareDeploy, taken by the onDeployed that follows it (no second lookup,
  // no second "cert" step); anything older is ensured again (recover, start).
  const prepared = new Map<string, { files: IssuedCertFiles; at: number }>();

  /** Without Metacrypt, an L7 route can still use a cert the operator placed in cert_dir. */
  const placedCert = (hostname: string): { certPath: string; keyPath: string } => {
    const certPath = join(certDir, `${hostname}.pem`);
    const keyPath = join(certDir, `${hostname}.key`);
    if (!existsSync(certPath) || !existsSync(keyPath))
      throw new Error(
        `no certificate for ${hostname}: Metacrypt is not configured ([metacrypt]) and ${certPath} or its key does not exist`,
      );
    return { certPath, keyPath };
  };

  const ensure = async (hostname: string): Promise<IssuedCertFiles> => {
    try {
      return await certs!.ensureCert(hostname);
    } catch (err) {
      throw new Error(`certificate for ${hostname}: ${firstLine(err)}`);
    }
  };

  const certDetail = (f: IssuedCertFiles) => `${f.hostname} ${f.reused ? "reused" : "issued"}`;

  const backendOf = (hostPort: number) =>
    opts.nodeAddress.includes(":") ? `[${opts.nodeAddress}]:${hostPort}` : `${opts.nodeAddress}:${hostPort}`;

  const removeRoutes = (service: string, routes: readonly RouteLike[]) =>
    step("route", routes, async (r) => {
      await proxy!.removeRoute(r.port, routeHostname(service, r, zone));
      return undefined;
    });

  return {
    async prepareDeploy(def: ServiceDef, c: ComponentDef): Promise<HookStepResult[]> {
      const hosts = l7Hostnames(def.name, c.routes, zone);
      if (hosts.length === 0) return [];
      if (certs) {
        return [
          await step("cert", hosts, async (h) => {
            const files = await ensure(h);
            prepared.set(h, { files, at: Date.now() });
            return certDetail(files);
          }),
        ];
      }
      // mc-proxy without Metacrypt: refuse now rather than register a route to a missing cert.
      if (proxy)
        return [
          await step("cert", hosts, async (h) => {
            placedCert(h);
            return `${h} placed`;
          }),
        ];
      return [];
    },

    async onDeployed(svc: ServiceRecord, c: ComponentRecord): Promise<HookStepResult[]> {
      const out: HookStepResult[] = [];
      const hosts = l7Hostnames(svc.name, c.routes, zone);
      const files = new Map<string, { certPath: string; keyPath: string }>();
      if (certs && hosts.length > 0) {
        const stale: string[] = [];
        for (const h of hosts) {
          const p = prepared.get(h);
          prepared.delete(h);
          if (p && Date.now() - p.at < PREPARED_TTL_MS) files.set(h, p.files);
          else stale.push(h);
        }
        if (stale.length > 0)
          out.push(
            await step("cert", stale, async (h) => {
              const f = await ensure(h);
              files.set(h, f);
              return certDetail(f);
            }),
          );
      }
      if (proxy && c.routes.length > 0) {
        out.push(
          await step("route", c.routes, async (r) => {
            const hostname = routeHostname(svc.name, r, zone);
            if (!(r.hostPort > 0)) throw new Error(`route ${hostname}:${r.port} has no host port allocated`);
            let tlsCert = "";
            let tlsKey = "";
            if (r.mode === "l7") {
              // Never register an L7 route pointing at a certificate that is not there (v2 design).
              const f = certs ? files.get(hostname) : placedCert(hostname);
              if (!f) throw new Error(`route ${hostname}:${r.port} not registered: no certificate`);
              tlsCert = f.certPath;
              tlsKey = f.keyPath;
            }
            const route: ProxyRoute = {
              listener: r.port,
              hostname,
              backend: backendOf(r.hostPort),
              mode: r.mode,
              tlsCert,
              tlsKey,
              // l7: mc-proxy terminates TLS and forwards plain HTTP to the service's $PORT on this
              // node (reference: backend_tls = false unless the backend itself speaks TLS); l4:
              // the bytes pass through untouched, so the flag does not apply.
              backendTls: false,
            };
            await proxy.addRoute(route);
            return `${r.port} ${hostname} → ${route.backend}`;
          }),
        );
      }
      if (dns) {
        out.push(
          await step("dns", [svc.name], async (name) => {
            await dns.upsertA(name, opts.nodeAddress);
            return `${name}.${zone} A ${opts.nodeAddress}`;
          }),
        );
      }
      for (const s of out)
        if (!s.success) log.warn({ service: svc.name, component: c.name, step: s.step }, s.error ?? "failed");
      return out;
    },

    async onStopped(svc: ServiceRecord, c: ComponentRecord): Promise<HookStepResult[]> {
      const out: HookStepResult[] = [];
      if (proxy && c.routes.length > 0) out.push(await removeRoutes(svc.name, c.routes));
      // The A record names the service: it goes when no component of it is meant to run any more.
      const othersRun = svc.components.some((x) => x.name !== c.name && x.desiredState === "running");
      if (dns && !othersRun)
        out.push(
          await step("dns", [svc.name], async (name) => {
            await dns.deleteA(name, opts.nodeAddress);
            return undefined;
          }),
        );
      for (const s of out)
        if (!s.success) log.warn({ service: svc.name, component: c.name, step: s.step }, s.error ?? "failed");
      return out;
    },

    async onUndeployed(svc: ServiceRecord): Promise<HookStepResult[]> {
      const out: HookStepResult[] = [];
      const routes = svc.components.flatMap((c) => c.routes);
      if (proxy && routes.length > 0) out.push(await removeRoutes(svc.name, routes));
      if (dns)
        out.push(
          await step("dns", [svc.name], async (name) => {
            await dns.deleteA(name, opts.nodeAddress);
            return undefined;
          }),
        );
      // Only certs Metacrypt issued are MCP's to delete; operator-placed ones stay.
      const hosts = l7Hostnames(svc.name, routes, zone);
      if (certs && hosts.length > 0)
        out.push(
          await step("cert", hosts, async (h) => {
            prepared.delete(h);
            await certs.removeCert(h);
            return undefined;
          }),
        );
      for (const s of out) if (!s.success) log.warn({ service: svc.name, step: s.step }, s.error ?? "failed");
      return out;
    },
  };
}

/** What each absent integration means, logged once at startup (nil-safety, SPEC §8). */
export const NOT_CONFIGURED = {
  proxy: "mc-proxy not configured ([mcproxy] socket): route steps skipped",
  certs: "Metacrypt not configured ([metacrypt] server_url): cert steps skipped",
  dns: "MCNS not configured ([mcns] server_url): DNS steps skipped",
} as const;

/**
 * The agent's hooks for the configured integrations: says once which ones are absent, and uses
 * noIntegrations() when none is configured (local mode: deploys exactly as without this module).
 */
export function composeHooks(opts: PlatformOptions, integrations: Integrations = {}): IntegrationHooks {
  for (const k of ["proxy", "certs", "dns"] as const)
    if (!integrations[k]) opts.logger.info(NOT_CONFIGURED[k]);
  if (!integrations.proxy && !integrations.certs && !integrations.dns) return noIntegrations(opts.logger);
  return platformHooks(opts, integrations);
}

/**
 * The adapters of the agent config's [mcproxy], [metacrypt] and [mcns] sections; an absent
 * section leaves its field undefined. Nothing connects here: the first call does (a proxy or CA
 * that is down fails that deploy step, never the agent's start). `path` resolves config paths.
 */
export function integrationsFromConfig(cfg: AgentConfig, path: (p: string) => string): Integrations {
  const out: Integrations = {};
  if (cfg.mcproxy) out.proxy = new McProxyClient(path(cfg.mcproxy.socket));
  if (cfg.metacrypt) {
    const m = cfg.metacrypt;
    out.certs = new MetacryptClient({
      serverUrl: m.server_url,
      ...(m.ca_cert ? { caCertPath: path(m.ca_cert) } : {}),
      mount: m.mount,
      issuer: m.issuer,
      token: fileToken(path(m.token_path)),
      certDir: certDirOf(cfg, path),
      insecureHttp: m.insecure_http === true,
    });
  }
  if (cfg.mcns) {
    const d = cfg.mcns;
    out.dns = new McnsClient({
      serverUrl: d.server_url,
      ...(d.ca_cert ? { caCertPath: path(d.ca_cert) } : {}),
      zone: d.zone,
      token: fileToken(path(d.token_path)),
      insecureHttp: d.insecure_http === true,
    });
  }
  return out;
}

/** mc-proxy's certificate directory: [mcproxy] cert_dir, else the reference location. */
export function certDirOf(cfg: AgentConfig, path: (p: string) => string): string {
  return cfg.mcproxy?.cert_dir ? path(cfg.mcproxy.cert_dir) : DEFAULT_CERT_DIR;
}
