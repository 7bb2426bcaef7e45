// Declarative sync (architecture-v2 "Sync Semantics"): the request is the complete set of
// services. New → deploy, changed (definition differs from the one recorded at its last master
// deploy) → redeploy, placed but absent → undeploy, same → nothing. Every definition is validated
// (schema and public hostnames) before any service is touched; dry_run reports without acting,
// with each placed service's recorded spec so the CLI can show what changes field by field.
import type { MessageInitShape } from "@bufbuild/protobuf";
import { defToSpec } from "../../component/proto.ts";
import type { ServiceDef } from "../../config/service.ts";
import type { MasterSyncPlanEntrySchema, ServiceSpec, StepResultSchema } from "../../gen/mcp/v1/mcp_pb.ts";
import { invalidArgument } from "../../rpc/errors.ts";
import type { MasterContext } from "./context.ts";
import { canonicalSpec, deployDef, masterUndeploy, requireCallerHostAccess, validateSpec } from "./deploy.ts";

type Step = MessageInitShape<typeof StepResultSchema>;
type PlanEntry = MessageInitShape<typeof MasterSyncPlanEntrySchema>;

export type SyncAction = "deploy" | "redeploy" | "undeploy" | "unchanged";

export interface SyncPlanEntry {
  service: string;
  action: SyncAction;
  spec?: ServiceSpec;
  def?: ServiceDef;
}

/** What sync would do, in a stable order: the request's services by name, then removals. */
export function syncPlan(ctx: MasterContext, specs: ServiceSpec[]): SyncPlanEntry[] {
  const errors: string[] = [];
  const entries: SyncPlanEntry[] = [];
  const seen = new Set<string>();
  for (const spec of specs) {
    try {
      const def = validateSpec(ctx, spec);
      if (seen.has(def.name)) throw new Error(`service ${def.name} appears twice`);
      seen.add(def.name);
      const placed = ctx.store.getPlacement(def.name);
      const action: SyncAction = !placed
        ? "deploy"
        : placed.specJson === canonicalSpec(def)
          ? "unchanged"
          : "redeploy";
      entries.push({ service: def.name, action, spec, def });
    } catch (err) {
      errors.push((err as Error).message);
    }
  }
  if (errors.length) throw invalidArgument(`sync refused, nothing changed: ${errors.join("; ")}`);
  entries.sort((a, b) => (a.service < b.service ? -1 : 1));
  for (const p of ctx.store.listPlacements()) {
    if (!seen.has(p.service)) entries.push({ service: p.service, action: "undeploy" });
  }
  return entries;
}

/** A dry run's plan entry: the action, where the service is placed and the spec placed there. */
function planEntry(ctx: MasterContext, e: SyncPlanEntry): PlanEntry {
  const placed = ctx.store.getPlacement(e.service);
  let spec: ServiceSpec | undefined;
  try {
    if (placed?.specJson) spec = defToSpec(JSON.parse(placed.specJson) as ServiceDef);
  } catch {
    // A placement written by an older master without a readable spec: compared with nothing.
  }
  return { service: e.service, action: e.action, node: placed?.node ?? "", placed: spec };
}

function dryStep(e: SyncPlanEntry): Step {
  const what = e.action === "unchanged" ? e.action : `would ${e.action}`;
  return { step: `${e.service}: ${what}`, success: true, error: "" };
}

export async function masterSync(
  ctx: MasterContext,
  specs: ServiceSpec[],
  dryRun: boolean,
  caller: { name: string; roles: string[] },
): Promise<{ results: Step[]; plan: PlanEntry[] }> {
  const plan = syncPlan(ctx, specs);
  // Before any service is touched (dry runs too): what sync would deploy needs host access when
  // it is host-level; an unchanged service is not deployed and is not checked.
  for (const e of plan)
    if (e.def && (e.action === "deploy" || e.action === "redeploy"))
      requireCallerHostAccess(ctx, e.def, caller);
  if (dryRun) return { results: plan.map(dryStep), plan: plan.map((e) => planEntry(ctx, e)) };
  const out: Step[] = [];
  for (const e of plan) {
    const label = `${e.service}: ${e.action}`;
    if (e.action === "unchanged") {
      out.push({ step: label, success: true, error: "" });
      continue;
    }
    try {
      if (e.action === "undeploy") {
        const r = await masterUndeploy(ctx, e.service);
        out.push({ step: label, success: r.success, error: r.error });
      } else {
        const r = await deployDef(ctx, e.spec!, e.def!);
        out.push({ step: `${label} on ${r.node}`, success: r.success === true, error: r.error ?? "" });
      }
    } catch (err) {
      out.push({
        step: label,
        success: false,
        error: ((err as Error).message ?? String(err)).split("\n")[0] ?? "",
      });
    }
  }
  return { results: out, plan: [] };
}
