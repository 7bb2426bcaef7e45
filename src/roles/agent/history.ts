// Spec history of deploys (registry deploy_history): what a finished deploy writes there and the
// service as the registry says it runs (component/registry.ts maps each record back to its
// definition). The RPCs over it are in rollback.ts.
import { recordToDef } from "../../component/registry.ts";
import type { ServiceDef } from "../../config/service.ts";
import type { HistoryKind, HistoryRecord } from "../../registry/types.ts";
import type { AgentContext } from "./context.ts";

/** [agent] history_keep's default. */
export const DEFAULT_HISTORY_KEEP = 10;

/** "web=img:v1, api=img:v2". */
export function imageSummary(def: Pick<ServiceDef, "components">): string {
  return def.components.map((c) => `${c.name}=${c.image}`).join(", ");
}

/** The service as the registry now says it runs: `def` with each component replaced by its record. */
export function effectiveDef(ctx: AgentContext, def: ServiceDef): ServiceDef {
  const recs = new Map((ctx.registry.getService(def.name)?.components ?? []).map((r) => [r.name, r]));
  return {
    ...def,
    components: def.components.flatMap((c) => {
      const r = recs.get(c.name);
      return r ? [recordToDef(r)] : [];
    }),
  };
}

export function writeHistory(
  ctx: AgentContext,
  def: ServiceDef,
  caller: string,
  kind: HistoryKind,
  detail: string,
): void {
  try {
    ctx.registry.insertHistory(
      {
        service: def.name,
        caller,
        imageSummary: imageSummary(def),
        specJson: JSON.stringify(def),
        kind,
        detail,
      },
      ctx.settings.historyKeep ?? DEFAULT_HISTORY_KEEP,
    );
  } catch (err) {
    // History is a record of the deploy, not part of it: never fail a finished deploy over it.
    ctx.logger.warn({ service: def.name, err: (err as Error).message }, "could not write deploy history");
  }
}

/**
 * The entry `mcp rollback` goes to by default: the newest earlier entry that ran (not a failed
 * attempt) and differs from the current one (the newest entry).
 */
export function previousEntry(entries: readonly HistoryRecord[]): HistoryRecord | null {
  const current = entries[0];
  if (!current) return null;
  return entries.slice(1).find((e) => e.kind !== "failed" && e.specJson !== current.specJson) ?? null;
}
