// Starts an agent in-process: registry, runtime, gRPC server with the auth+audit interceptor.
// The daemon (daemon.ts) builds AgentSettings from the config file; tests can call this directly.

import { type Identity, requireOperator } from "../../auth/identity.ts";
import { McpAgent } from "../../gen/mcp/v1/mcp_pb.ts";
import type { Registry } from "../../registry/index.ts";
import { openRegistry } from "../../registry/index.ts";
import type { Policy } from "../../rpc/interceptor.ts";
import { type RunningServer, startServer } from "../../rpc/server.ts";
import { type AgentContext, type AgentSettings, KeyedLock } from "./context.ts";
import { agentHandlers } from "./handlers.ts";
import { noIntegrations } from "./hooks.ts";
import { nodeAddressOf } from "./host-ports.ts";
import { composeHooks } from "./integrations.ts";
import { nodeRuntimes } from "./runtimes.ts";
import { type Background, runStartup } from "./startup.ts";

/** SPEC §5.2: any authenticated non-guest user or system account may operate the agent. */
export const operatorPolicy: Policy = (_method, id) => {
  try {
    requireOperator(id as Identity);
    return null;
  } catch (err) {
    return (err as Error).message;
  }
};

/**
 * Agent RPCs that only the master may call once the agent has a master (architecture-v2: "All new
 * RPCs [HealthCheck, Setup/Remove/ListEdgeRoutes] require the caller to be mcp-master"; the edge
 * route list is the master's bookkeeping, no CLI command reads it from an agent).
 */
export const MASTER_ONLY_AGENT_RPCS: ReadonlySet<string> = new Set([
  "Deploy",
  "UndeployService",
  "SetupEdgeRoute",
  "RemoveEdgeRoute",
  "ListEdgeRoutes",
  "HealthCheck",
  "ExportServiceData",
  "ImportServiceData",
]);

/**
 * With [master] configured, placement-changing RPCs and the health probe belong to the master:
 * only the `mcp-master` system identity may call them (an operator goes through the master).
 * Every other RPC keeps the operator policy. Without a master: the operator policy alone.
 */
export function agentPolicy(masterConfigured: boolean): Policy {
  if (!masterConfigured) return operatorPolicy;
  return (method, id) => {
    const name = method.slice(method.lastIndexOf("/") + 1);
    if (MASTER_ONLY_AGENT_RPCS.has(name)) {
      if (id.name === "mcp-master" && id.accountType === "system") return null;
      return `${name} on this agent is reserved for mcp-master (the agent has a [master]); ${id.name} may not call it`;
    }
    return operatorPolicy(method, id);
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

export async function startAgent(settings: AgentSettings): Promise<RunningAgent> {
  const registry = openRegistry(settings.dbPath, (m) => settings.logger.warn(m));
  const shutdown = new AbortController();
  const ctx: AgentContext = {
    settings,
    registry,
    runtime: nodeRuntimes(settings, registry),
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
  let server: RunningServer;
  try {
    server = await startServer({
      address: settings.grpcAddr,
      allowAnyAddr: settings.allowAnyAddr,
      certPem: settings.tlsCertPem,
      keyPem: settings.tlsKeyPem,
      validator: settings.validator,
      policy: agentPolicy(settings.master !== undefined),
      logger: settings.logger,
      services: [{ desc: McpAgent, handlers: agentHandlers(ctx) }],
    });
  } catch (err) {
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
      await server.close();
      settings.integrations?.proxy?.close();
      registry.close();
    },
  };
}
