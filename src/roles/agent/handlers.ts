// gRPC handlers of the McpAgent service: decode the request, call the use case, encode.
// Validation of incoming specs reuses the definition-file schema (component/proto.ts).

import { defToSpec, specToDef } from "../../component/proto.ts";
import type { ServiceDef } from "../../config/service.ts";
import type { McpAgent } from "../../gen/mcp/v1/mcp_pb.ts";
import { invalidArgument, notFound } from "../../rpc/errors.ts";
import type { Handlers } from "../../rpc/service.ts";
import type { PullPolicy } from "../../runtime/runtime.ts";
import type { AgentContext } from "./context.ts";
import { deployService } from "./deploy.ts";
import { edgeHandlers } from "./edge.ts";
import { filesHandlers } from "./files.ts";
import { historyHandlers } from "./history-rpc.ts";
import { restartService, startService, stopService } from "./lifecycle.ts";
import { logsHandlers } from "./logs.ts";
import { proxyRoutesHandlers } from "./proxy-routes.ts";
import { recoverHandlers } from "./recover.ts";
import { serviceDataHandlers } from "./service-data.ts";
import { listServices, liveCheck, managedRunning, nodeStatus, serviceStatus } from "./status.ts";
import { toolkitHandlers } from "./toolkit.ts";

const PULL_POLICIES = new Set(["always", "missing", "never"]);

function requireName(name: string, what = "service name"): string {
  if (!name) throw invalidArgument(`${what} is required`);
  return name;
}

export function agentHandlers(ctx: AgentContext): Partial<Handlers<typeof McpAgent>> {
  return {
    ...filesHandlers(ctx),
    ...logsHandlers(ctx),
    ...toolkitHandlers(ctx),
    ...recoverHandlers(ctx),
    ...proxyRoutesHandlers(ctx),
    ...edgeHandlers(ctx),
    ...historyHandlers(ctx),
    ...serviceDataHandlers(ctx),
    async deploy(req, call) {
      if (!req.service) throw invalidArgument("service spec is required");
      if (req.pullPolicy && !PULL_POLICIES.has(req.pullPolicy)) {
        throw invalidArgument(
          `pull_policy: expected "always", "missing" or "never", got "${req.pullPolicy}"`,
        );
      }
      const def = specToDef(req.service, `service ${req.service.name || "(unnamed)"}`);
      const results = await deployService(ctx, def, {
        component: req.component || undefined,
        pullPolicy: (req.pullPolicy || undefined) as PullPolicy | undefined,
        dryRun: req.dryRun,
        noRollback: req.noRollback,
        caller: call.identity.name,
      });
      return { results };
    },
    async stopService(req) {
      return { results: await stopService(ctx, requireName(req.name), req.component || undefined) };
    },
    async startService(req) {
      return { results: await startService(ctx, requireName(req.name), req.component || undefined) };
    },
    async restartService(req) {
      return { results: await restartService(ctx, requireName(req.name), req.component || undefined) };
    },
    async listServices() {
      return { services: listServices(ctx) };
    },
    async liveCheck() {
      return { services: await liveCheck(ctx) };
    },
    async getServiceStatus(req) {
      return serviceStatus(ctx, req.name);
    },
    async nodeStatus() {
      return nodeStatus(ctx);
    },
    async getServiceSpec(req) {
      const svc = ctx.registry.getService(requireName(req.name));
      if (!svc?.specJson)
        throw notFound(`no deployed spec for service "${req.name}" on node ${ctx.settings.nodeName}`);
      return { service: defToSpec(JSON.parse(svc.specJson) as ServiceDef) };
    },
    async healthCheck() {
      const list = await ctx.runtime.list().catch(() => null);
      return {
        status: list ? "healthy" : "degraded",
        containers: list ? managedRunning(ctx, list) : 0,
      };
    },
  };
}
