// Spec history of deploys (registry deploy_history): what a finished deploy writes there and the
// service as the registry says it runs (component/registry.ts maps each record back to its
// definition), and how a `mcp rollback` row names the entry it restored. The RPCs over it are in
// rollback.ts.
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

const VERB: Record<HistoryKind, string> = { deploy: "deployed", rollback: "restored", failed: "attempted" };
/** What agents before this one wrote: the target's database id, which no operator ever sees. */
const LEGACY = /^rollback to entry (\d+) \((.*), (deploy|rollback|failed) of (\S+)\)$/;
const BY_TIME = /^rollback to the spec (?:deployed|restored|attempted) at (\S+) \(/;

/**
 * The detail of a `mcp rollback` row: the entry it restored by the time it was written (stable,
 * unlike its place in the list, which moves down as entries arrive) and its images. ListHistory
 * finds the entry again from this text (rollbackTarget), so clients can name it by its place in
 * the list they show.
 */
export function rollbackDetail(target: HistoryRecord): string {
  return `rollback to the spec ${VERB[target.kind]} at ${target.deployedAt.toISOString()} (${target.imageSummary})`;
}

/** A row's detail as ListHistory shows it: an older agent's "rollback to entry <id> …" reworded by time. */
export function shownDetail(row: HistoryRecord): string {
  const m = LEGACY.exec(row.detail);
  return m ? `rollback to the spec ${VERB[m[3] as HistoryKind]} at ${m[4]} (${m[2]})` : row.detail;
}

/**
 * The entry a `mcp rollback` row restored, among `entries` (the service's rows), or null: not such a
 * row (a deploy, an automatic rollback), or the entry was pruned since. Entries written in the same
 * millisecond are told apart by the spec the rollback ran.
 */
export function rollbackTarget(row: HistoryRecord, entries: readonly HistoryRecord[]): HistoryRecord | null {
  if (row.kind !== "rollback") return null;
  const legacy = LEGACY.exec(row.detail);
  if (legacy) return entries.find((e) => e.id === Number(legacy[1])) ?? null;
  const at = BY_TIME.exec(row.detail)?.[1];
  if (!at) return null;
  const older = entries.filter((e) => e.id < row.id && e.deployedAt.toISOString() === at);
  return older.find((e) => e.specJson === row.specJson) ?? older[0] ?? null;
}
