// Starts an agent in-process: registry, runtime, gRPC server with the auth+audit interceptor.
// The daemon (daemon.ts) builds AgentSettings from the config file; tests can call this directly.

import { MASTER_NAME, operatorDenial } from "../../auth/identity.ts";
import { McpAgent } from "../../gen/mcp/v1/mcp_pb.ts";
import type { Registry } from "../../registry/index.ts";
import { openRegistry } from "../../registry/index.ts";
import type { Policy } from "../../rpc/interceptor.ts";
import { type RunningServer, startServer } from "../../rpc/server.ts";
import { LiveRuntime } from "../../runtime/live-runtime.ts";
import type { UnikernelRuntime } from "../../runtime/unikernel.ts";
import { type AgentContext, type AgentSettings, KeyedLock } from "./context.ts";
import { agentHandlers } from "./handlers.ts";
import { noIntegrations } from "./hooks.ts";
import { nodeAddressOf } from "./host-ports.ts";
import { composeHooks } from "./integrations.ts";
import { TransitionRecorder } from "./live-events.ts";
import { nodeRuntimes } from "./runtimes.ts";
import { type Background, runStartup } from "./startup.ts";

/** SPEC §5.2 operators with no system account listed: humans with user or admin. */
export const operatorPolicy: Policy = (_method, id) => operatorDenial(id, new Set());

/**
 * Agent RPCs only the master may call once the agent has a master (SPEC §5.2: Deploy, Undeploy,
 * SyncDesiredState, edge routes; architecture-v2: the health probe and service data moves). The
 * master proves itself with its client certificate, never a token another node could replay.
 */
export const MASTER_ONLY_AGENT_RPCS: ReadonlySet<string> = new Set([
  "Deploy",
  "UndeployService",
  "SyncDesiredState",
  "SetupEdgeRoute",
  "RemoveEdgeRoute",
  "ListEdgeRoutes",
  "HealthCheck",
  "ExportServiceData",
  "ImportServiceData",
]);

/**
 * Operator RPCs the master also calls: fleet status reads a service's live state; a migration
 * stops the service on its source and starts it again there when the move fails.
 */
export const MASTER_ALSO_CALLS: ReadonlySet<string> = new Set(["LiveCheck", "StopService", "StartService"]);

export interface AgentPolicyOptions {
  /** The agent has a [master]: the master-only RPCs are the master's alone. */
  master: boolean;
  /** System accounts that may operate ([auth] operators). */
  operators?: readonly string[];
}

/**
 * Who may call what on an agent (SPEC §5.2): operators call the operator RPCs; the master (its
 * client certificate) calls the master's RPCs, and with a [master] they are its alone;
 * `agent-<node>` accounts call nothing here. Without a master operators may call every RPC.
 */
export function agentPolicy(opts: AgentPolicyOptions): Policy {
  const operators = new Set(opts.operators ?? []);
  return (method, id) => {
    const name = method.slice(method.lastIndexOf("/") + 1);
    const isMaster = id.name === MASTER_NAME && id.credential === "certificate";
    if (isMaster && (MASTER_ONLY_AGENT_RPCS.has(name) || MASTER_ALSO_CALLS.has(name))) return null;
    if (opts.master && MASTER_ONLY_AGENT_RPCS.has(name))
      return `${name} on this agent is reserved for the master (its client certificate; the agent has a [master]); ${id.name} may not call it`;
    return operatorDenial(id, operators);
  };
}

export interface RunningAgent {
  port: number;
  ctx: AgentContext;
  registry: Registry;
  server: RunningServer;
  /** Resolves when recover/boot/monitor startup has finished starting (see startup.ts). */
  startup: Promise<Background[]>;
  close(): Promise<void>;
}

/**
 * The unikernel runtime when it is configured and QEMU answers `--version`; otherwise the node
 * does not offer it (one warning says why) and unikernel components are refused here.
 */
export async function offeredUnikernel(settings: AgentSettings): Promise<UnikernelRuntime | undefined> {
  const u = settings.unikernel;
  if (!u) return undefined;
  try {
    const v = await u.version();
    settings.logger.info(
      { qemu: v, accel: u.accel.accel, why: u.accel.reason },
      `unikernel runtime: QEMU ${v}, accel ${u.accel.accel}`,
    );
    return u;
  } catch (err) {
    settings.logger.warn(
      `unikernel runtime not offered: QEMU did not answer (${(err as Error).message.split("\n")[0]})`,
    );
    u.close(); // no pid watch for a runtime the node does not offer
    return undefined;
  }
}

export async function startAgent(settings: AgentSettings): Promise<RunningAgent> {
  const unikernel = await offeredUnikernel(settings);
  const registry = openRegistry(settings.dbPath, (m) => settings.logger.warn(m));
  const shutdown = new AbortController();
  // The container runtime behind a live view kept by its event stream (live-runtime.ts).
  const live = settings.runtime.eventSource
    ? new LiveRuntime(settings.runtime, settings.runtime.eventSource(), { logger: settings.logger })
    : undefined;
  const ctx: AgentContext = {
    settings,
    registry,
    runtime: nodeRuntimes(
      { runtime: live ?? settings.runtime, nodeName: settings.nodeName },
      registry,
      unikernel,
    ),
    ...(live ? { live } : {}),
    ...(unikernel ? { unikernelInfo: () => ({ ...unikernel.accel }) } : {}),
    logger: settings.logger,
    locks: new KeyedLock(),
    startedAt: new Date(),
    hooks:
      settings.hooks ??
      (settings.integrations
        ? composeHooks(
            { logger: settings.logger, nodeAddress: nodeAddressOf(settings) },
            settings.integrations,
          )
        : noIntegrations(settings.logger)),
    shutdown: shutdown.signal,
  };
  const recorder = new TransitionRecorder(ctx);
  ctx.recorder = recorder;
  live?.onChange(recorder.listener("container"));
  unikernel?.onChange(recorder.listener("unikernel"));
  live?.open();
  const masterCa = settings.master?.caPem ?? settings.masterCaPem;
  let server: RunningServer;
  try {
    server = await startServer({
      address: settings.grpcAddr,
      allowAnyAddr: settings.allowAnyAddr,
      certPem: settings.tlsCertPem,
      keyPem: settings.tlsKeyPem,
      validator: settings.validator,
      policy: agentPolicy({ master: settings.master !== undefined, operators: settings.operators ?? [] }),
      // The master's client certificate (CN mcp-master, issued by the fleet CA) identifies it.
      ...(masterCa ? { clientCaPem: masterCa } : {}),
      logger: settings.logger,
      services: [{ desc: McpAgent, handlers: agentHandlers(ctx) }],
    });
  } catch (err) {
    live?.close();
    await recorder.close();
    registry.close();
    throw err;
  }
  settings.logger.info(
    { node: settings.nodeName, addr: settings.grpcAddr, port: server.port, version: settings.version },
    "agent listening",
  );
  // Startup runs in the background: a blocking boot stage must not keep the API down.
  const startup = runStartup(ctx).catch((err: unknown) => {
    settings.logger.error({ err: (err as Error).message }, "agent startup failed");
    return [] as Background[];
  });
  return {
    port: server.port,
    ctx,
    registry,
    server,
    startup,
    async close() {
      shutdown.abort();
      for (const b of await startup) await b.stop();
      live?.close();
      await recorder.close();
      await server.close();
      settings.integrations?.proxy?.close();
      registry.close();
    },
  };
}
