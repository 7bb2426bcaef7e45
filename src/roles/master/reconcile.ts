// Startup reconciliation of the master (architecture-v2 "Reconciliation"): without waiting for
// agents to re-register, probe every node the database knows (HealthCheck, bounded by
// probe_timeout) and mark it healthy/unhealthy; then ask each reachable agent ONCE for its live
// services (LiveCheck: the runtime's view, hand-started containers included) and compare with the
// placements: a placement whose service is not running on its node is stale, a running service
// without a placement on that node is an orphan. Read-only: nothing is redeployed or removed;
// findings are logged and kept for `mcp status` (MasterStatusResponse.orphans/stale_placements).
// The first probe round is the warm-up: health warnings start only after it (health.ts).
import type { Logger } from "pino";
import type { AgentPool } from "./agents.ts";
import type { MasterHealth } from "./health.ts";
import type { MasterStore, NodeRecord } from "./store.ts";

export interface ReconcileReport {
  /** "<node>/<service>": running on the node without a placement there. */
  orphans: string[];
  /** "<node>/<service>": placed on the node but not running there. */
  stalePlacements: string[];
  /** Nodes that did not answer the probe or the service listing (their placements unchecked). */
  unreachable: string[];
  /** When the round finished (ISO). */
  finishedAt: string;
}

/** A node's services as the agent sees them now: name and whether any component runs. */
export type ServiceLister = (
  node: NodeRecord,
  timeoutMs: number,
) => Promise<{ name: string; running: boolean }[]>;

export function agentLister(pool: AgentPool): ServiceLister {
  return async (node, timeoutMs) => {
    const client = await pool.get(node);
    const res = await client.liveCheck({}, { timeoutMs });
    return res.services.map((s) => ({
      name: s.name,
      running: s.components.some((c) => c.observedState === "running"),
    }));
  };
}

export interface ReconcileDeps {
  store: MasterStore;
  logger: Logger;
  health: MasterHealth;
  list: ServiceLister;
  /** Bound for each listing call. */
  timeoutMs: number;
}

/** Compares placements with what agents run (pure: the listing results are inputs). */
export function compare(
  placements: readonly { service: string; node: string }[],
  running: ReadonlyMap<string, ReadonlySet<string>>,
): { orphans: string[]; stalePlacements: string[] } {
  const placed = new Set(placements.map((p) => `${p.node}/${p.service}`));
  const stalePlacements = placements
    .filter((p) => running.has(p.node) && !running.get(p.node)!.has(p.service))
    .map((p) => `${p.node}/${p.service}`);
  const orphans: string[] = [];
  for (const [node, services] of running) {
    for (const s of services) if (!placed.has(`${node}/${s}`)) orphans.push(`${node}/${s}`);
  }
  return { orphans: orphans.sort(), stalePlacements: stalePlacements.sort() };
}

const reports = new WeakMap<MasterStore, ReconcileReport>();

/**
 * The last reconciliation's findings for this master (null before the first round finished),
 * minus what the operator has fixed since through the master: a stale placement that was
 * removed or moved, an orphan that now has a placement on its node.
 */
export function reconcileReport(store: MasterStore): ReconcileReport | null {
  const r = reports.get(store);
  if (!r) return null;
  const placed = new Map(store.listPlacements().map((p) => [p.service, p.node]));
  return {
    ...r,
    stalePlacements: r.stalePlacements.filter((sp) => {
      const [node, service] = sp.split("/") as [string, string];
      return placed.get(service) === node;
    }),
    orphans: r.orphans.filter((o) => {
      const [node, service] = o.split("/") as [string, string];
      return placed.get(service) !== node;
    }),
  };
}

/** One reconciliation round; always ends the health warm-up, even when nodes time out. */
export async function reconcileFleet(deps: ReconcileDeps): Promise<ReconcileReport> {
  const { store, logger, health } = deps;
  const nodes = store.listNodes();
  const running = new Map<string, Set<string>>();
  const unreachable: string[] = [];
  try {
    await Promise.all(
      nodes.map(async (n) => {
        if (!(await health.probe(n))) {
          unreachable.push(n.name);
          return;
        }
        try {
          const services = await deps.list(n, deps.timeoutMs);
          running.set(n.name, new Set(services.filter((s) => s.running).map((s) => s.name)));
        } catch (err) {
          unreachable.push(n.name);
          logger.warn({ node: n.name, err: (err as Error).message }, "reconcile: cannot list services");
        }
      }),
    );
  } finally {
    health.markWarm();
  }
  const { orphans, stalePlacements } = compare(store.listPlacements(), running);
  for (const s of stalePlacements)
    logger.warn({ placement: s }, "reconcile: stale placement (service not running)");
  for (const o of orphans) logger.warn({ orphan: o }, "reconcile: orphan (running without a placement)");
  const report: ReconcileReport = {
    orphans,
    stalePlacements,
    unreachable: unreachable.sort(),
    finishedAt: new Date().toISOString(),
  };
  reports.set(store, report);
  logger.info(
    {
      nodes: nodes.length,
      orphans: orphans.length,
      stale: stalePlacements.length,
      unreachable: report.unreachable,
    },
    "reconcile: fleet view restored",
  );
  return report;
}
