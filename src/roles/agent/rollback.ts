// ListHistory and Rollback: the spec history of a service, newest first, and redeploying one
// entry through the same health-gated deploy path, so a rollback to a bad spec is itself rolled
// back to what ran before it.
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { defToSpec, specToDef } from "../../component/proto.ts";
import type { ServiceDef } from "../../config/service.ts";
import type { McpAgent } from "../../gen/mcp/v1/mcp_pb.ts";
import type { HistoryRecord } from "../../registry/types.ts";
import { failedPrecondition, invalidArgument, notFound } from "../../rpc/errors.ts";
import type { Handlers } from "../../rpc/service.ts";
import type { AgentContext } from "./context.ts";
import { deployService } from "./deploy.ts";
import { previousEntry, rollbackDetail, rollbackTarget, shownDetail } from "./history.ts";
import { requireHostAccessFor } from "./host-access.ts";

/** An entry's whole spec for `mcp history --diff`; one stored unreadably is sent as none. */
function storedSpec(e: HistoryRecord) {
  try {
    return defToSpec(JSON.parse(e.specJson) as ServiceDef);
  } catch {
    return undefined;
  }
}

export function rollbackHandlers(ctx: AgentContext): Partial<Handlers<typeof McpAgent>> {
  return {
    async listHistory(req) {
      if (!req.service) throw invalidArgument("service name is required");
      const entries = ctx.registry.listHistory(req.service);
      if (entries.length === 0 && !ctx.registry.getService(req.service)) {
        throw notFound(`service "${req.service}" is not deployed on node ${ctx.settings.nodeName}`);
      }
      return {
        entries: entries.map((e) => ({
          id: BigInt(e.id),
          deployedAt: timestampFromDate(e.deployedAt),
          caller: e.caller,
          images: e.imageSummary,
          rolledBack: e.kind === "rollback",
          kind: e.kind,
          detail: shownDetail(e),
          rollbackToId: BigInt(rollbackTarget(e, entries)?.id ?? 0),
          spec: req.specs ? storedSpec(e) : undefined,
        })),
      };
    },
    async rollback(req, call) {
      if (!req.service) throw invalidArgument("service name is required");
      const entries = ctx.registry.listHistory(req.service);
      let target: HistoryRecord | null;
      if (req.toId === 0n) {
        target = previousEntry(entries);
        if (!target) {
          throw failedPrecondition(
            entries.length === 0
              ? `service "${req.service}" has no deploy history on node ${ctx.settings.nodeName}`
              : `service "${req.service}" has no earlier deployed spec that differs from the current one`,
          );
        }
      } else {
        target = entries.find((e) => BigInt(e.id) === req.toId) ?? null;
        if (!target) throw notFound(`service "${req.service}" has no history entry ${req.toId}`);
      }
      // Stored specs were valid when written; validate again in case the schema moved on.
      const def = specToDef(
        defToSpec(JSON.parse(target.specJson) as ServiceDef),
        `the history entry of ${target.deployedAt.toISOString()}`,
      );
      // The entry was allowed for whoever deployed it then: host-level fields need this caller's
      // right now (an admin's retired host-network spec is not a user's to bring back).
      requireHostAccessFor(ctx, def, call.identity);
      const results = await deployService(ctx, def, {
        caller: call.identity.name,
        noRollback: req.noRollback,
        pullPolicy: "missing",
        historyKind: "rollback",
        historyDetail: rollbackDetail(target),
      });
      return { results };
    },
  };
}
