// The master's context: its settings (built by daemon.ts from the config file, or by tests), and
// what every use case and handler reaches through (store, agent clients, locks, logger). It lives
// apart from startMaster so the handlers can name it without importing the file that imports them.
import type { Logger } from "pino";
import type { HostAccess } from "../../auth/host-access.ts";
import type { MasterConfig } from "../../config/master.ts";
import type { ClientCert } from "../../rpc/client.ts";
import type { Policy } from "../../rpc/interceptor.ts";
import type { DaemonSettings } from "../../util/daemon.ts";
import type { KeyedLock } from "../../util/keyed-lock.ts";
import type { AgentPool } from "./agents.ts";
import type { NodeView } from "./placement.ts";
import type { MasterStore, NodeInput, NodeRole } from "./store.ts";

export interface MasterTimeouts {
  deployMs: number;
  edgeRouteMs: number;
  healthCheckMs: number;
  undeployMs: number;
}

export interface MasterSettings extends DaemonSettings {
  /** CA that signed the agents' certificates. */
  caPem: string;
  /**
   * The master's client certificate for agents (CN mcp-master, clientAuth, issued by the fleet CA:
   * SPEC §5.2 — never a bearer token an agent could replay); null = none configured, and agents
   * with a [master] refuse the master-only RPCs.
   */
  clientCert: ClientCert | null;
  /** Public hostnames must fall under one of these (label matching). */
  allowedDomains: string[];
  timeouts: MasterTimeouts;
  /** Heartbeat tracking ([master] section); used by the health monitor. */
  heartbeat: { intervalMs: number; miss: number; probeTimeoutMs: number };
  /** [registration]: allowlist of agent identities and the node cap. */
  registration: {
    allowedAgents: string[];
    /** Node name → role ([registration] roles); nodes not named take their bootstrap role, else worker. */
    roles?: Record<string, NodeRole>;
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
  /**
   * Host-level access (auth/host-access.ts): [auth] host_access (absent = "admin") and the nodes'
   * srv_root that volumes are confined to ([master] node_srv_root; absent = "/srv").
   */
  hostAccess?: HostAccess;
  nodeSrvRoot?: string;
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

/** The store's nodes as placement sees them. */
export function nodeViews(ctx: MasterContext): NodeView[] {
  return ctx.store.listNodes().map((n) => ({
    name: n.name,
    role: n.role,
    status: n.status,
    containers: n.containers,
    runtimes: n.runtimes,
  }));
}
