// The McpAgent service: every use-case module exports the handlers of its own RPCs next to the
// use case (`<name>Handlers(ctx)`: decode and validate the request, call the use case, encode the
// answer); this file only puts them together. One place to look for an RPC: the module of its use
// case.
import type { McpAgent } from "../../gen/mcp/v1/mcp_pb.ts";
import type { Handlers } from "../../rpc/service.ts";
import { adoptHandlers } from "./adopt.ts";
import type { AgentContext } from "./context.ts";
import { deployHandlers } from "./deploy.ts";
import { edgeHandlers } from "./edge.ts";
import { filesHandlers } from "./files.ts";
import { lifecycleHandlers } from "./lifecycle.ts";
import { logsHandlers } from "./logs.ts";
import { proxyRoutesHandlers } from "./proxy-routes.ts";
import { recoverHandlers } from "./recover.ts";
import { rollbackHandlers } from "./rollback.ts";
import { serviceDataHandlers } from "./service-data.ts";
import { statusHandlers } from "./status.ts";
import { syncHandlers } from "./sync.ts";
import { undeployHandlers } from "./undeploy.ts";

export function agentHandlers(ctx: AgentContext): Partial<Handlers<typeof McpAgent>> {
  return {
    ...deployHandlers(ctx),
    ...lifecycleHandlers(ctx),
    ...statusHandlers(ctx),
    ...rollbackHandlers(ctx),
    ...undeployHandlers(ctx),
    ...adoptHandlers(ctx),
    ...syncHandlers(ctx),
    ...recoverHandlers(ctx),
    ...filesHandlers(ctx),
    ...serviceDataHandlers(ctx),
    ...logsHandlers(ctx),
    ...proxyRoutesHandlers(ctx),
    ...edgeHandlers(ctx),
  };
}
