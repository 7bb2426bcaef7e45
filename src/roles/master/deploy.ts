// Master deploy and undeploy (architecture-v2 "Deploy Flow with Edge Routing", "Undeploy Flow").
// Deploy: validate the spec and every public hostname BEFORE anything changes, place, forward
// Deploy to the agent, record the placement (with the deployed definition, for sync), then set up
// each public route on the edge node and record it. DNS: the worker agent registers the service's
// internal A record itself during its deploy (integrations issue), so dns_result reports that step
// as done by the agent rather than registering a second time from the master.
// Undeploy: the worker first (no traffic served during edge cleanup), then the edge routes, then
// the records. Both run under the per-service lock.
import type { MessageInitShape } from "@bufbuild/protobuf";
import { hostLevelFields, requireHostAccess } from "../../auth/host-access.ts";
import { specToDef } from "../../component/proto.ts";
import type { ServiceDef } from "../../config/service.ts";
import type {
  ComponentResult,
  MasterDeployResponseSchema,
  ServiceSpec,
  StepResultSchema,
} from "../../gen/mcp/v1/mcp_pb.ts";
import { CallError } from "../../rpc/client.ts";
import { failedPrecondition, invalidArgument, notFound } from "../../rpc/errors.ts";
import { type MasterContext, nodeViews } from "./context.ts";
import { backendHostname, pickEdgeNode, publicRouteErrors, publicRoutes } from "./edge.ts";
import { place, runtimeMisfit, runtimeNeeds } from "./placement.ts";

type Step = MessageInitShape<typeof StepResultSchema>;
export type DeployResult = MessageInitShape<typeof MasterDeployResponseSchema>;

const firstLine = (err: unknown) => ((err as Error)?.message ?? String(err)).split("\n")[0] ?? "";
const ok = (step: string): Step => ({ step, success: true, error: "" });
const failed = (step: string, err: unknown): Step => ({ step, success: false, error: firstLine(err) });

/** Components of a stored definition (its JSON), 0 when unreadable. */
function componentCount(specJson: string): number {
  try {
    const d = JSON.parse(specJson) as { components?: unknown[] };
    return Array.isArray(d.components) ? d.components.length : 0;
  } catch {
    return 0;
  }
}

/** The definition's canonical form: what sync compares to tell a changed service. */
export function canonicalSpec(def: ServiceDef): string {
  return JSON.stringify(def);
}

/** Validates a wire spec (definition schema + public hostnames); throws INVALID_ARGUMENT. */
export function validateSpec(ctx: MasterContext, spec: ServiceSpec | undefined): ServiceDef {
  if (!spec) throw invalidArgument("service spec is required");
  const def = specToDef(spec, `service ${spec.name || "(unnamed)"}`);
  const errors = publicRouteErrors(def, ctx.settings.allowedDomains);
  if (errors.length > 0) throw invalidArgument(`service ${def.name}: ${errors.join("; ")}`);
  return def;
}

/**
 * The node for `def`: an existing placement sticks (its data lives there) unless pinned elsewhere,
 * or unless its node lacks a runtime kind the definition now needs (refused, never moved).
 */
function chooseNode(ctx: MasterContext, def: ServiceDef): string {
  const request = { name: def.name, node: def.node, tier: def.tier, needs: runtimeNeeds(def.components) };
  const existing = ctx.store.getPlacement(def.name);
  if (existing && (!def.node || def.node === existing.node)) {
    const view = nodeViews(ctx).find((n) => n.name === existing.node);
    const misfit = view ? runtimeMisfit(request, view) : null;
    if (misfit) throw failedPrecondition(misfit);
    return existing.node;
  }
  if (existing) {
    throw failedPrecondition(
      `service ${def.name} is placed on ${existing.node}, not ${def.node}: undeploy it first (or migrate)`,
    );
  }
  const r = place(request, nodeViews(ctx));
  if ("error" in r) throw failedPrecondition(r.error);
  return r.node;
}

function agentFor(ctx: MasterContext, name: string) {
  const node = ctx.store.getNode(name);
  if (!node) throw notFound(`node "${name}" is not known to the master`);
  return ctx.agents.get(node);
}

/**
 * Placement must see a deploy at once, not at the node's next heartbeat: the master adjusts its
 * own count by the containers it added or removed; the next heartbeat replaces it with the truth.
 */
function adjustContainers(ctx: MasterContext, node: string, delta: number): void {
  const n = ctx.store.getNode(node);
  // Held for one heartbeat interval plus slack: an older sample may still be on its way.
  const holdMs = ctx.settings.heartbeat.intervalMs + 1000;
  if (n && delta !== 0) ctx.store.setContainers(node, Math.max(0, n.containers + delta), holdMs);
}

/** Public routes: set up the desired ones on the edge node, remove recorded ones no longer wanted. */
async function converge(ctx: MasterContext, def: ServiceDef, component: string | undefined): Promise<Step> {
  const wanted = publicRoutes(def, component);
  const recorded = ctx.store.listEdgeRoutes(def.name);
  const errors: string[] = [];
  const done: string[] = [];
  if (!component) {
    const keep = new Set(wanted.map((w) => w.hostname));
    for (const r of recorded.filter((r) => !keep.has(r.hostname))) {
      try {
        await removeEdgeRoute(ctx, r.edgeNode, r.hostname);
        ctx.store.deleteEdgeRoute(r.hostname);
      } catch (err) {
        errors.push(`remove ${r.hostname}: ${firstLine(err)}`);
      }
    }
  }
  if (wanted.length === 0) {
    return errors.length ? failed("edge route", errors.join("; ")) : ok("edge route: none");
  }
  const pick = pickEdgeNode(nodeViews(ctx));
  for (const route of wanted) {
    // A route already on an edge node stays there; new ones go to the picked edge node.
    const edgeNode =
      recorded.find((r) => r.hostname === route.hostname)?.edgeNode ?? ("node" in pick ? pick.node : "");
    if (!edgeNode) {
      errors.push(`${route.hostname}: ${"error" in pick ? pick.error : "no edge node"}`);
      continue;
    }
    const backend = backendHostname(def.name);
    try {
      const edge = await agentFor(ctx, edgeNode);
      const opts = { timeoutMs: ctx.settings.timeouts.edgeRouteMs };
      await edge.setupEdgeRoute(
        { hostname: route.hostname, backendHostname: backend, backendPort: route.port, backendTls: true },
        opts,
      );
      const listed = await edge.listEdgeRoutes({}, opts).catch(() => null);
      const certExpires = listed?.routes.find((r) => r.hostname === route.hostname)?.certExpires || null;
      ctx.store.upsertEdgeRoute({
        hostname: route.hostname,
        service: def.name,
        edgeNode,
        backendHostname: backend,
        backendPort: route.port,
        certExpires,
      });
      done.push(`${route.hostname} on ${edgeNode}`);
    } catch (err) {
      errors.push(`${route.hostname} on ${edgeNode}: ${firstLine(err)}`);
    }
  }
  if (errors.length) return failed("edge route", errors.join("; "));
  return ok(`edge route: ${done.join(", ")}`);
}

async function removeEdgeRoute(ctx: MasterContext, edgeNode: string, hostname: string): Promise<void> {
  const edge = await agentFor(ctx, edgeNode);
  await edge.removeEdgeRoute({ hostname }, { timeoutMs: ctx.settings.timeouts.edgeRouteMs });
}

/** Deploys a validated definition (the caller holds no lock; this takes the service's). */
export async function deployDef(
  ctx: MasterContext,
  spec: ServiceSpec,
  def: ServiceDef,
  component = "",
  force = false,
): Promise<DeployResult> {
  return ctx.locks.run(def.name, async () => {
    if (component && !def.components.some((c) => c.name === component)) {
      throw invalidArgument(`service ${def.name} has no component "${component}"`);
    }
    const node = chooseNode(ctx, def);
    // Public routes need an edge node: refused before anything is deployed, like a bad hostname.
    const recorded = new Set(ctx.store.listEdgeRoutes(def.name).map((r) => r.hostname));
    if (publicRoutes(def, component || undefined).some((r) => !recorded.has(r.hostname))) {
      const pick = pickEdgeNode(nodeViews(ctx));
      if ("error" in pick)
        throw failedPrecondition(`service ${def.name} has public routes but ${pick.error}`);
    }
    const out: DeployResult = { node, success: false, error: "" };
    let components: ComponentResult[] = [];
    let nothingKept = false;
    try {
      const agent = await agentFor(ctx, node);
      const res = await agent.deploy(
        { service: spec, component, force },
        { timeoutMs: ctx.settings.timeouts.deployMs },
      );
      components = res.results;
      nothingKept = res.nothingKept;
    } catch (err) {
      out.deployResult = failed(`deploy on ${node}`, err);
      out.dnsResult = failed("dns", "not attempted: deploy failed");
      out.edgeRouteResult = failed("edge route", "not attempted: deploy failed");
      out.error = `deploy on ${node}: ${err instanceof CallError ? err.message : firstLine(err)}`;
      return out;
    }
    out.components = components;
    // Recorded even when a component failed: containers may exist and undeploy must find them.
    // Not when the node kept nothing of a service placed for the first time (a failed first
    // deploy): the master then knows no more of it than the node does.
    // A single-component deploy keeps the stored full definition unless none was stored yet.
    const prior = ctx.store.getPlacement(def.name);
    const before = prior?.specJson ? componentCount(prior.specJson) : 0;
    if (!(nothingKept && !prior)) {
      ctx.store.upsertPlacement({
        service: def.name,
        node,
        tier: def.tier,
        specJson: component && prior?.specJson ? prior.specJson : canonicalSpec(def),
      });
      if (!component) adjustContainers(ctx, node, def.components.length - before);
    }
    const bad = components.filter((c) => !c.success);
    out.deployResult = bad.length
      ? failed(`deploy on ${node}`, bad.map((c) => `${c.name}: ${c.error}`).join("; "))
      : ok(`deploy on ${node}`);
    out.dnsResult = bad.length
      ? failed("dns", "worker deploy failed")
      : ok(`dns: ${backendHostname(def.name)} registered by the agent on ${node}`);
    out.edgeRouteResult = bad.length
      ? failed("edge route", "not attempted: deploy failed")
      : await converge(ctx, def, component || undefined);
    out.success = bad.length === 0 && out.edgeRouteResult.success === true;
    if (!out.success) out.error = (bad.length ? out.deployResult.error : out.edgeRouteResult.error) ?? "";
    return out;
  });
}

/**
 * Host-level fields (auth/host-access.ts) need an admin caller, or every operator with [auth]
 * host_access = "operators": checked here because the agent sees the master, not the operator,
 * and skips its own role check for the master. Volumes are confined to
 * <[master] node_srv_root>/<service>/.
 */
export function requireCallerHostAccess(ctx: MasterContext, def: ServiceDef, caller: Caller): void {
  const fields = hostLevelFields(def, ctx.settings.nodeSrvRoot ?? "/srv");
  requireHostAccess(caller, def.name, fields, ctx.settings.hostAccess ?? "admin");
}

type Caller = { name: string; roles: string[] };

export async function masterDeploy(
  ctx: MasterContext,
  spec: ServiceSpec | undefined,
  component: string,
  caller: Caller,
  force = false,
) {
  const def = validateSpec(ctx, spec);
  requireCallerHostAccess(ctx, def, caller);
  return deployDef(ctx, spec!, def, component, force);
}

/** Undeploys a placed service: worker, then edge routes, then records. */
export async function masterUndeploy(
  ctx: MasterContext,
  service: string,
): Promise<{ success: boolean; error: string }> {
  if (!service) throw invalidArgument("service name is required");
  return ctx.locks.run(service, async () => {
    const placement = ctx.store.getPlacement(service);
    if (!placement) throw notFound(`service "${service}" is not placed by the master`);
    try {
      const agent = await agentFor(ctx, placement.node);
      const res = await agent.undeployService(
        { name: service },
        { timeoutMs: ctx.settings.timeouts.undeployMs },
      );
      const bad = res.results.filter((r) => !r.success);
      if (bad.length) throw new Error(bad.map((r) => `${r.name}: ${r.error}`).join("; "));
    } catch (err) {
      return { success: false, error: `undeploy on ${placement.node}: ${firstLine(err)}` };
    }
    const errors: string[] = [];
    for (const r of ctx.store.listEdgeRoutes(service)) {
      try {
        await removeEdgeRoute(ctx, r.edgeNode, r.hostname);
        ctx.store.deleteEdgeRoute(r.hostname);
      } catch (err) {
        errors.push(`edge route ${r.hostname} on ${r.edgeNode}: ${firstLine(err)}`);
      }
    }
    // With an edge route left, the placement stays so a retried undeploy can finish the cleanup.
    if (errors.length) return { success: false, error: errors.join("; ") };
    ctx.store.deletePlacement(service);
    adjustContainers(ctx, placement.node, -(placement.specJson ? componentCount(placement.specJson) : 0));
    return { success: true, error: "" };
  });
}
