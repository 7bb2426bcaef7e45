// SyncDesiredState use case (reference "Active State", "Registry Reconciliation"): the CLI
// pushes every definition for this node. The agent records each spec and its desired state
// (active → running, inactive → stopped) WITHOUT deploying, reconciles against the runtime
// (unknown containers become `ignore` entries), stops running services marked inactive, and
// reports per service whether anything changed. A dry run computes the same report and writes,
// stops and discovers nothing.
import type { MessageInitShape } from "@bufbuild/protobuf";
import { containerName } from "../../component/container.ts";
import { specToDef } from "../../component/proto.ts";
import type { ServiceDef } from "../../config/service.ts";
import type { McpAgent, ServiceSyncResultSchema } from "../../gen/mcp/v1/mcp_pb.ts";
import type { ServiceRecord } from "../../registry/types.ts";
import { invalidArgument } from "../../rpc/errors.ts";
import type { Handlers } from "../../rpc/service.ts";
import type { AgentContext } from "./context.ts";
import { recordSpec } from "./deploy.ts";
import { requireHostAccessFor } from "./host-access.ts";
import { stopService } from "./lifecycle.ts";
import { requireContainersFree, requireOwnContainers } from "./ownership.ts";
import { reconcile } from "./reconcile.ts";
import { requireRuntimes } from "./runtimes.ts";
import { checkServiceHome } from "./service-home.ts";

type Result = MessageInitShape<typeof ServiceSyncResultSchema>;

export const SUMMARY = {
  recorded: "desired state recorded",
  stopped: "stopped (inactive)",
  unchanged: "unchanged",
  discovered: "discovered (desired ignore)",
} as const;

/** Whether recording `def` would change the registry entry `rec` (spec, active, desired states). */
export function wouldChange(rec: ServiceRecord | null, def: ServiceDef): boolean {
  if (!rec) return true;
  if (rec.specJson !== JSON.stringify(def) || rec.active !== def.active) return true;
  const desired = def.active ? "running" : "stopped";
  return def.components.some((c) => rec.components.find((x) => x.name === c.name)?.desiredState !== desired);
}

/** Records spec + desired state for every component; drops ignore rows that are now components. */
function recordDesired(ctx: AgentContext, def: ServiceDef): void {
  const reg = ctx.registry;
  reg.withTransaction(() => {
    // recordSpec with no deployed components keeps each component's image and version (what runs).
    recordSpec(ctx, def, []);
    reg.setDesiredState(def.name, null, def.active ? "running" : "stopped");
    for (const c of def.components) {
      const cname = containerName(def.name, c.name);
      if (cname === def.name) continue;
      const stray = reg.getService(cname);
      if (stray?.components.every((x) => x.desiredState === "ignore" && x.name === cname))
        reg.deleteService(cname);
    }
  });
}

export async function syncDesiredState(
  ctx: AgentContext,
  defs: ServiceDef[],
  opts: { dryRun?: boolean } = {},
): Promise<Result[]> {
  const results: Result[] = [];
  const byName = new Map<string, Result>();
  // One listing for every definition: a container labelled for another service is never claimed.
  const containers = defs.length > 0 ? await ctx.runtime.list() : [];
  for (const def of defs) {
    const r: Result = { name: def.name, changed: false, summary: SUMMARY.unchanged };
    results.push(r);
    byName.set(def.name, r);
    try {
      // Recorded desired state is what recover and start would run: not for a runtime absent here.
      requireRuntimes(ctx, def);
      requireOwnContainers(ctx, def);
      // Unlabelled containers under these names are claimed as today (they were discovered).
      await requireContainersFree(ctx, def, { unlabelled: "keep", containers });
      const changed = await ctx.locks.run(def.name, async () => {
        const changed = wouldChange(ctx.registry.getService(def.name), def);
        if (changed && !opts.dryRun) recordDesired(ctx, def);
        return changed;
      });
      if (changed) Object.assign(r, { changed: true, summary: SUMMARY.recorded });
    } catch (err) {
      Object.assign(r, { error: (err as Error).message.split("\n")[0] });
    }
  }

  // What runs now: a full reconcile (and discovery) for a real sync, a plain listing for a dry run.
  let running: Set<string>;
  if (opts.dryRun) {
    const list = await ctx.runtime.list();
    running = new Set(list.filter((c) => c.state === "running").map((c) => c.name));
    const known = new Set<string>();
    for (const s of ctx.registry.listServices())
      for (const c of s.components) known.add(containerName(s.name, c.name));
    for (const def of defs) for (const c of def.components) known.add(containerName(def.name, c.name));
    for (const c of list) {
      if (!known.has(c.name))
        results.push({ name: c.name, changed: true, summary: `would be ${SUMMARY.discovered}` });
    }
    for (const r of results)
      if (r.changed && r.summary === SUMMARY.recorded) r.summary = "would record desired state";
  } else {
    const rec = await reconcile(ctx);
    running = new Set([...rec.containers.values()].filter((c) => c.state === "running").map((c) => c.name));
    for (const name of rec.discovered) results.push({ name, changed: true, summary: SUMMARY.discovered });
  }

  for (const def of defs) {
    const r = byName.get(def.name)!;
    if (def.active || r.error) continue;
    const up = def.components.filter((c) => running.has(containerName(def.name, c.name)));
    if (up.length === 0) continue;
    if (opts.dryRun) {
      Object.assign(r, { changed: true, summary: `would be ${SUMMARY.stopped}` });
      continue;
    }
    const stopped = await stopService(ctx, def.name);
    const failed = stopped.filter((s) => !s.success);
    if (failed.length > 0) {
      Object.assign(r, {
        changed: true,
        summary: "stop failed",
        error: failed.map((f) => `${f.name}: ${f.error}`).join("; "),
      });
    } else Object.assign(r, { changed: true, summary: SUMMARY.stopped });
  }
  ctx.logger.info(
    {
      dryRun: opts.dryRun === true,
      services: results.filter((r) => r.changed).map((r) => `${r.name}:${r.summary}`),
    },
    "sync finished",
  );
  return results;
}

/** SyncDesiredState: every spec is validated before anything is touched; one bad spec refuses the whole request. */
export function syncHandlers(ctx: AgentContext): Partial<Handlers<typeof McpAgent>> {
  return {
    async syncDesiredState(req, call) {
      const seen = new Set<string>();
      const defs = req.services.map((s) => {
        const def = specToDef(s, `service ${s.name || "(unnamed)"}`);
        checkServiceHome(ctx.settings, def.name);
        if (seen.has(def.name))
          throw invalidArgument(`service ${def.name} appears twice in the sync request`);
        seen.add(def.name);
        // What sync records, StartService runs: host-level fields need an admin here as in Deploy.
        // A definition the registry already holds as it is changes nothing and is not checked
        // (a full-set sync may carry a service an admin deployed).
        if (ctx.registry.getService(def.name)?.specJson !== JSON.stringify(def))
          requireHostAccessFor(ctx, def, call.identity);
        return def;
      });
      return { results: await syncDesiredState(ctx, defs, { dryRun: req.dryRun }) };
    },
  };
}
