// Starts the master in-process: its store, agent clients, the gRPC server (TLS 1.3, auth+audit
// interceptor) with McpMasterService, and the background tasks (heartbeat monitor, startup
// reconciliation). The daemon (daemon.ts) builds MasterSettings from the config file; tests call
// startMaster directly.
import type { Logger } from "pino";
import { type Identity, requireOperator, type TokenValidator } from "../../auth/identity.ts";
import type { MasterConfig } from "../../config/master.ts";
import { McpMasterService } from "../../gen/mcp/v1/mcp_pb.ts";
import type { Policy } from "../../rpc/interceptor.ts";
import { type RunningServer, startServer } from "../../rpc/server.ts";
import { KeyedLock } from "../../util/keyed-lock.ts";
import { AgentPool } from "./agents.ts";
import { masterHandlers } from "./handlers.ts";
import { startHealthMonitor } from "./health.ts";
import type { NodeView } from "./placement.ts";
import { masterPolicy } from "./policy.ts";
import { snapshotSettings, startSnapshotScheduler } from "./snapshots.ts";
import { type MasterStore, type NodeInput, openMasterStore } from "./store.ts";

export interface MasterTimeouts {
  deployMs: number;
  edgeRouteMs: number;
  healthCheckMs: number;
  undeployMs: number;
}

export interface MasterSettings {
  grpcAddr: string;
  allowAnyAddr: boolean;
  tlsCertPem: string;
  tlsKeyPem: string;
  dbPath: string;
  validator: TokenValidator;
  logger: Logger;
  version: string;
  /** CA that signed the agents' certificates. */
  caPem: string;
  /** The master's own token for agents (identity `mcp-master`); null = none configured. */
  agentToken: string | null;
  /** Public hostnames must fall under one of these (label matching). */
  allowedDomains: string[];
  timeouts: MasterTimeouts;
  /** Heartbeat tracking ([master] section); used by the health monitor. */
  heartbeat: { intervalMs: number; miss: number; probeTimeoutMs: number };
  /** [registration]: allowlist of agent identities and the node cap. */
  registration: {
    allowedAgents: string[];
    maxNodes: number;
    registerIntervalMs?: number;
    heartbeatMinIntervalMs?: number;
  };
  /** [[nodes]]: bootstrap entries, inserted at start when not yet known (status unknown until probed). */
  bootstrapNodes: NodeInput[];
  /** Per-RPC authorization; default: operators only (SPEC §5.2). */
  policy?: Policy;
  /** Per-address connect timeout for agents with fallback addresses (default 2 s). */
  connectTimeoutMs?: number;
  /** The parsed config file, when started by the daemon (for settings not mirrored above). */
  config?: MasterConfig;
}

/** What startup reconciliation found (read-only report); null until it has run. */
export interface FleetReport {
  orphans: string[];
  stalePlacements: string[];
  at: Date;
}

export interface Background {
  stop(): Promise<void>;
}

export interface MasterContext {
  settings: MasterSettings;
  store: MasterStore;
  agents: AgentPool;
  /** One deploy/undeploy/sync step per service at a time, fleet-wide. */
  locks: KeyedLock;
  logger: Logger;
  startedAt: Date;
  /** Aborted at shutdown: background loops must stop. */
  shutdown: AbortSignal;
  /** Set by reconciliation (reconcile.ts); Status merges it with what it sees live. */
  fleetReport: FleetReport | null;
}

/** Until a finer policy is configured: any authenticated non-guest user or system account. */
export const operatorOnlyPolicy: Policy = (_method, id) => {
  try {
    requireOperator(id as Identity);
    return null;
  } catch (err) {
    return (err as Error).message;
  }
};

/** The store's nodes as placement sees them. */
export function nodeViews(ctx: MasterContext): NodeView[] {
  return ctx.store
    .listNodes()
    .map((n) => ({ name: n.name, role: n.role, status: n.status, containers: n.containers }));
}

export interface RunningMaster {
  port: number;
  ctx: MasterContext;
  server: RunningServer;
  close(): Promise<void>;
}

/** Background tasks started once the server is up (heartbeat monitor, reconciliation). */
function startBackground(_ctx: MasterContext): Background[] {
  const running: Background[] = [startHealthMonitor(_ctx)];
  if (snapshotSettings(_ctx).scheduled) running.push(startSnapshotScheduler(_ctx));
  return running;
}

export async function startMaster(settings: MasterSettings): Promise<RunningMaster> {
  const store = openMasterStore(settings.dbPath);
  const shutdown = new AbortController();
  const agents = new AgentPool({
    caPem: settings.caPem,
    token: settings.agentToken,
    connectTimeoutMs: settings.connectTimeoutMs,
  });
  const ctx: MasterContext = {
    settings,
    store,
    agents,
    locks: new KeyedLock(),
    logger: settings.logger,
    startedAt: new Date(),
    shutdown: shutdown.signal,
    fleetReport: null,
  };
  // Bootstrap nodes seed the registry; a node that registered since keeps what it reported.
  for (const n of settings.bootstrapNodes) {
    if (!store.getNode(n.name)) store.upsertNode(n);
  }
  let server: RunningServer;
  try {
    server = await startServer({
      address: settings.grpcAddr,
      allowAnyAddr: settings.allowAnyAddr,
      certPem: settings.tlsCertPem,
      keyPem: settings.tlsKeyPem,
      validator: settings.validator,
      policy:
        settings.policy ??
        masterPolicy({ registration: { allowed_agents: settings.registration.allowedAgents } }),
      logger: settings.logger,
      services: [{ desc: McpMasterService, handlers: masterHandlers(ctx) }],
    });
  } catch (err) {
    agents.close();
    store.close();
    throw err;
  }
  settings.logger.info(
    { addr: settings.grpcAddr, port: server.port, version: settings.version },
    "master listening",
  );
  const background = startBackground(ctx);
  return {
    port: server.port,
    ctx,
    server,
    async close() {
      shutdown.abort();
      for (const b of background) await b.stop();
      await server.close();
      agents.close();
      store.close();
    },
  };
}
