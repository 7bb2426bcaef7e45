// gRPC handlers of the operator toolkit RPCs: UndeployService, AdoptContainer,
// SyncDesiredState. Decoding and validation here; the work is in undeploy.ts, adopt.ts, sync.ts.

import { specToDef } from "../../component/proto.ts";
import type { McpAgent } from "../../gen/mcp/v1/mcp_pb.ts";
import { invalidArgument } from "../../rpc/errors.ts";
import type { Handlers } from "../../rpc/service.ts";
import { adoptContainers } from "./adopt.ts";
import type { AgentContext } from "./context.ts";
import { syncDesiredState } from "./sync.ts";
import { undeployService } from "./undeploy.ts";

export function toolkitHandlers(ctx: AgentContext): Partial<Handlers<typeof McpAgent>> {
  return {
    async undeployService(req) {
      if (!req.name) throw invalidArgument("service name is required");
      if (req.component)
        throw invalidArgument(
          `undeploy works on whole services; to drop ${req.name}/${req.component}, remove it from the definition and deploy`,
        );
      return { results: await undeployService(ctx, req.name) };
    },
    async adoptContainer(req) {
      if (!req.service) throw invalidArgument("service name is required");
      return { results: await adoptContainers(ctx, req.service) };
    },
    async syncDesiredState(req) {
      // Validate every spec before touching anything: one bad spec refuses the whole request.
      const seen = new Set<string>();
      const defs = req.services.map((s) => {
        const def = specToDef(s, `service ${s.name || "(unnamed)"}`);
        if (seen.has(def.name))
          throw invalidArgument(`service ${def.name} appears twice in the sync request`);
        seen.add(def.name);
        return def;
      });
      return { results: await syncDesiredState(ctx, defs, { dryRun: req.dryRun }) };
    },
  };
}
