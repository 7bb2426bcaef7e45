// What every agent use case works with: settings, the registry, the runtime, the logger,
// and the per-service locks that serialize deploys and lifecycle changes of one service.
import type { Logger } from "pino";
import type { HostAccess } from "../../auth/host-access.ts";
import type { BootStage } from "../../config/agent.ts";
import type { Integrations } from "../../integrations/types.ts";
import type { Transition } from "../../monitor/evaluate.ts";
import type { Registry } from "../../registry/index.ts";
import type { ServiceRecord } from "../../registry/types.ts";
import type { LiveRuntime } from "../../runtime/live-runtime.ts";
import type { RuntimeRouter } from "../../runtime/router.ts";
import type { PullPolicy, Runtime } from "../../runtime/runtime.ts";
import type { UnikernelRuntime } from "../../runtime/unikernel.ts";
import type { DaemonSettings } from "../../util/daemon.ts";
import type { KeyedLock } from "../../util/keyed-lock.ts";
import type { IntegrationHooks } from "./hooks.ts";

export interface AgentSettings extends DaemonSettings {
  nodeName: string;
  /** The node's container runtime (podman or docker): runs the components of kind "container". */
  runtime: Runtime;
  /**
   * [runtimes.unikernel]: the unikernel runtime (Nanos VMs under QEMU); absent = the node runs
   * containers only. Offered only when QEMU answers at start (startAgent checks).
   */
  unikernel?: UnikernelRuntime;
  srvRoot: string;
  /** [auth] host_access: who besides an admin may deploy host-level fields (absent = "admin"). */
  hostAccess?: HostAccess;
  portRange: [number, number];
  /**
   * [agent] address: where other nodes, mc-proxy and DNS reach this node's route ports, and the
   * address they are published on. Absent = 127.0.0.1 (the daemon always fills it).
   */
  nodeAddress?: string;
  pullPolicy: PullPolicy;
  /** [agent] history_keep: deploy history rows kept per service (default 10). */
  historyKeep?: number;
  /** [agent] import_max_bytes: file content one ImportServiceData may expand to (default 1 GiB). */
  importMaxBytes?: number;
  /** [agent] import_max_entries: files and directories in one ImportServiceData (default 100,000). */
  importMaxEntries?: number;
  /** Route/cert/DNS integrations; absent = none configured (noIntegrations). */
  hooks?: IntegrationHooks;
  /** The configured adapters (mc-proxy, Metacrypt, MCNS); absent or a field unset = not configured. */
  integrations?: Integrations;
  /** [monitor] (durations in ms); absent = no watch loop. */
  monitor?: MonitorSettings;
  /** [agent] recover_on_start: recreate lost containers from the registry before anything else. */
  recoverOnStart?: boolean;
  /** [[boot.sequence]] stages, brought up in order at start. */
  bootSequence?: BootStage[];
  /**
   * The agent's own files beyond dbPath (config, TLS cert/key, token files, backups dir): a
   * service whose <srv_root>/<service> holds one is refused (service-home.ts).
   */
  statePaths?: string[];
  /**
   * The CA whose client certificate (CN mcp-master, clientAuth) identifies the master: [master]
   * ca_cert, else [tls] ca_cert. Absent (and no [master]): no client certificate is asked for.
   */
  masterCaPem?: string;
  /** [master]: register with and heartbeat to the master (master-link.ts); absent = standalone. */
  master?: MasterLinkSettings;
  /** [edge]: SetupEdgeRoute limits (edge.ts); absent = the defaults (100.64.0.0/10, listener 443). */
  edge?: EdgeSettings;
}

export interface MasterLinkSettings {
  /** The master's host:port (first tried), then any fallbacks. */
  address: string;
  addresses?: string[];
  /** The role Register claims; absent = none (the master's config decides). */
  role?: "worker" | "edge" | "master";
  heartbeatMs: number;
  /** CA that signed the master's certificate. */
  caPem: string;
  /** This agent's bearer token for the master (identity agent-<node>). */
  token: string;
  /** First registration retry delay (doubles to backoffMaxMs); default 1 s. Tests shorten it. */
  backoffBaseMs?: number;
  /** Default 60 s. */
  backoffMaxMs?: number;
}

export interface EdgeSettings {
  /** Resolved backend addresses must fall in one of these (architecture-v2: the Tailnet range). */
  allowedBackendCidrs: string[];
  /** mc-proxy listener public routes go on. */
  listener: number;
}

export interface MonitorSettings {
  intervalMs: number;
  /** argv exec'd (no shell) with MCP_* in its environment; empty = log only. */
  alertCommand: string[];
  cooldownMs: number;
  flapThreshold: number;
  flapWindowMs: number;
  retentionMs: number;
  alertTimeoutMs: number;
}

export interface AgentContext {
  settings: AgentSettings;
  registry: Registry;
  /** Every runtime the node has, behind one router (runtimes.ts): each component goes to its own. */
  runtime: RuntimeRouter;
  logger: Logger;
  locks: KeyedLock;
  startedAt: Date;
  hooks: IntegrationHooks;
  /** Aborted when the agent shuts down: long-running work (boot retries, ticks) must stop. */
  shutdown: AbortSignal;
  /**
   * The accelerator the unikernel runtime boots VMs with ("kvm" | "tcg") and why; given by that
   * runtime's wiring, absent (or undefined) when the node has none. Reported in NodeStatus and to
   * the master (status.ts runtimeReport).
   */
  unikernelInfo?: () => UnikernelInfo | undefined;
  /**
   * The container runtime's live view (events + listings): the monitor's safety-net resync and
   * node status read it. Absent when the runtime has no event stream (tests' bare contexts).
   */
  live?: LiveRuntime;
  /** Writes runtime-reported changes at once (live-events.ts); the monitor gives it its judge. */
  recorder?: ChangeRecorder;
}

/** What the agent's use cases see of the TransitionRecorder (live-events.ts). */
export interface ChangeRecorder {
  /** Who judges what is written from now on (the monitor, once it runs). */
  setJudge(judge: (transitions: Transition[], services: ServiceRecord[]) => Promise<unknown>): void;
  /** Writes what is queued now and waits for its judgments. */
  settle(): Promise<void>;
  readonly stats: { changes: number; batches: number; transitions: number };
}

export interface UnikernelInfo {
  accel: string;
  reason: string;
}

// KeyedLock moved to src/util so the master can share it; re-exported for agent modules.
export { KeyedLock } from "../../util/keyed-lock.ts";
