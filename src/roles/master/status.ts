// Fleet status and node list for the CLI. Status asks every reachable agent once (LiveCheck: a
// fresh reconcile of its containers), joins that with the placements and edge routes, and reports
// services running without a placement (orphans) and placements whose service is gone (stale),
// merged with what startup reconciliation found.
import type { MessageInitShape } from "@bufbuild/protobuf";
import type {
  MasterStatusResponseSchema,
  NodeInfoSchema,
  ServiceInfo,
  ServiceStatusSchema,
} from "../../gen/mcp/v1/mcp_pb.ts";
import { notFound } from "../../rpc/errors.ts";
import type { MasterContext } from "./context.ts";
import { reconcileReport } from "./reconcile.ts";
import { staleSnapshots } from "./snapshots.ts";
import type { NodeRecord } from "./store.ts";

type ServiceStatus = MessageInitShape<typeof ServiceStatusSchema>;
type NodeInfo = MessageInitShape<typeof NodeInfoSchema>;

/** running: every component meant to run runs; stopped: none runs; otherwise unhealthy. */
export function serviceState(svc: ServiceInfo | undefined): "running" | "stopped" | "unhealthy" | "unknown" {
  if (!svc) return "unknown";
  const managed = svc.components.filter((c) => c.desiredState !== "ignore");
  const running = managed.filter((c) => c.observedState === "running").length;
  const wanted = managed.filter((c) => c.desiredState === "running").length;
  if (running === 0) return wanted === 0 ? "stopped" : managed.length ? "unhealthy" : "stopped";
  return managed.every((c) => (c.desiredState === "running") === (c.observedState === "running"))
    ? "running"
    : "unhealthy";
}

/** Each reachable node's services (one LiveCheck per agent, in parallel); null = not reachable. */
async function liveServices(
  ctx: MasterContext,
  nodes: NodeRecord[],
): Promise<Map<string, ServiceInfo[] | null>> {
  const out = new Map<string, ServiceInfo[] | null>();
  await Promise.all(
    nodes.map(async (n) => {
      if (n.status === "unhealthy") {
        out.set(n.name, null);
        return;
      }
      try {
        const agent = await ctx.agents.get(n);
        const res = await agent.liveCheck({}, { timeoutMs: ctx.settings.timeouts.healthCheckMs * 2 });
        out.set(n.name, res.services);
      } catch (err) {
        ctx.logger.warn({ node: n.name, err: (err as Error).message }, "status: agent not reachable");
        out.set(n.name, null);
      }
    }),
  );
  return out;
}

export async function masterStatus(
  ctx: MasterContext,
  service: string,
): Promise<MessageInitShape<typeof MasterStatusResponseSchema>> {
  const placements = ctx.store.listPlacements().filter((p) => !service || p.service === service);
  if (service && placements.length === 0) throw notFound(`service "${service}" is not placed by the master`);
  const allNodes = ctx.store.listNodes();
  const wantedNodes = service ? allNodes.filter((n) => placements.some((p) => p.node === n.name)) : allNodes;
  const live = await liveServices(ctx, wantedNodes);
  const byName = new Map(allNodes.map((n) => [n.name, n]));
  const stale = new Set<string>();
  const services: ServiceStatus[] = placements.map((p) => {
    const node = byName.get(p.node);
    const list = live.get(p.node);
    const svc = list?.find((s) => s.name === p.service);
    if (list && !svc) stale.add(`${p.node}/${p.service}`);
    const status = node?.status === "unhealthy" ? "unhealthy" : list ? serviceState(svc) : "unknown";
    return {
      name: p.service,
      node: p.node,
      tier: p.tier,
      status,
      edgeRoutes: ctx.store
        .listEdgeRoutes(p.service)
        .map((r) => ({ hostname: r.hostname, edgeNode: r.edgeNode, certExpires: r.certExpires ?? "" })),
      components: svc?.components ?? [],
    };
  });
  const orphans = new Set<string>();
  if (!service) {
    const placed = new Set(placements.map((p) => `${p.node}/${p.service}`));
    for (const [node, list] of live) {
      for (const s of list ?? []) {
        // Anything running on a node without a placement is an orphan (v2 "Direct Mode Caveat"),
        // including containers the agent only discovered (desired "ignore").
        if (!placed.has(`${node}/${s.name}`)) orphans.add(`${node}/${s.name}`);
      }
    }
    // Startup reconciliation's findings, minus what was fixed through the master since.
    const report = reconcileReport(ctx.store);
    // It only speaks for nodes that did not answer now: live data is fresher.
    const unjudged = (entry: string) => live.get(entry.slice(0, entry.indexOf("/"))) === null;
    for (const o of report?.orphans ?? []) if (unjudged(o)) orphans.add(o);
    for (const s of report?.stalePlacements ?? []) if (unjudged(s)) stale.add(s);
  }
  return {
    services,
    orphans: [...orphans].sort(),
    stalePlacements: [...stale].sort(),
    staleSnapshots: staleSnapshots(ctx).filter((s) => !service || s === service),
  };
}

export function nodeInfo(n: NodeRecord): NodeInfo {
  return {
    name: n.name,
    role: n.role,
    address: n.address,
    arch: n.arch,
    status: n.status,
    containers: n.containers,
    lastHeartbeat: n.lastHeartbeat ?? "",
    version: n.version,
    runtimes: n.runtimes ?? [],
    unikernelAccel: n.unikernelAccel,
    unikernelAccelReason: n.unikernelAccelReason,
  };
}

export function listNodes(ctx: MasterContext): NodeInfo[] {
  return ctx.store.listNodes().map(nodeInfo);
}
