// gRPC handlers of McpMasterService: decode, call the use case, encode. Registration and
// heartbeat handlers come from registration.ts (identity, registration, health).
import type { McpMasterService } from "../../gen/mcp/v1/mcp_pb.ts";
import type { Handlers } from "../../rpc/service.ts";
import type { MasterContext } from "./context.ts";
import { masterDeploy, masterUndeploy } from "./deploy.ts";
import { masterMigrate } from "./migrate.ts";
import { registrationHandlers } from "./registration.ts";
import { snapshotHandlers } from "./snapshots.ts";
import { listNodes, masterStatus } from "./status.ts";
import { masterSync } from "./sync.ts";

export function masterHandlers(ctx: MasterContext): Partial<Handlers<typeof McpMasterService>> {
  return {
    async deploy(req, call) {
      return masterDeploy(ctx, req.service, req.component, call.identity, req.force);
    },
    async undeploy(req) {
      return masterUndeploy(ctx, req.serviceName);
    },
    async status(req) {
      return masterStatus(ctx, req.serviceName);
    },
    async sync(req, call) {
      return masterSync(ctx, req.services, req.dryRun, call.identity);
    },
    async listNodes() {
      return { nodes: listNodes(ctx) };
    },
    migrate: (req) => masterMigrate(ctx, req),
    ...registrationHandlers(ctx),
    ...snapshotHandlers(ctx),
  };
}
