// Starts the master in-process: its store, agent clients, the gRPC server (TLS 1.3, auth+audit
// interceptor) with McpMasterService, and the background tasks (heartbeat monitor, startup
// reconciliation). The daemon (daemon.ts) builds MasterSettings (context.ts) from the config file;
// tests call startMaster directly.
import { McpMasterService } from "../../gen/mcp/v1/mcp_pb.ts";
import { type RunningServer, startServer } from "../../rpc/server.ts";
import { KeyedLock } from "../../util/keyed-lock.ts";
import { AgentPool } from "./agents.ts";
import type { Background, MasterContext, MasterSettings } from "./context.ts";
import { masterHandlers } from "./handlers.ts";
import { startHealthMonitor } from "./health.ts";
import { masterPolicy } from "./policy.ts";
import { snapshotSettings, startSnapshotScheduler } from "./snapshots.ts";
import { openMasterStore } from "./store.ts";

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
  const store = openMasterStore(settings.dbPath, (m) => settings.logger.warn(m));
  const shutdown = new AbortController();
  const agents = new AgentPool({
    caPem: settings.caPem,
    clientCert: settings.clientCert,
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
        masterPolicy({
          registration: { allowed_agents: settings.registration.allowedAgents },
          operators: settings.operators ?? [],
        }),
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
