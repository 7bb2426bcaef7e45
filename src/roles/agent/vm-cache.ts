// The unikernel runtime's image cache kept to what the node needs: the exported filesystems of the
// images current specs and their history entries name (so a rollback or a recover rebuilds a VM
// image without pulling), and the built images current VMs boot. Run after a deploy or undeploy
// changed what runs; a failure is logged, never fails the operation (the cache only saves work).
import type { ServiceDef } from "../../config/service.ts";
import type { AgentContext } from "./context.ts";

/** Image references of unikernel components in current specs and history entries. */
export function unikernelImageRefs(ctx: Pick<AgentContext, "registry">): Set<string> {
  const refs = new Set<string>();
  for (const s of ctx.registry.listServices()) {
    for (const c of s.components) if (c.runtime === "unikernel") refs.add(c.image);
    for (const h of ctx.registry.listHistory(s.name)) {
      let def: ServiceDef;
      try {
        def = JSON.parse(h.specJson) as ServiceDef;
      } catch {
        continue;
      }
      for (const c of def.components ?? []) if (c.runtime === "unikernel") refs.add(c.image);
    }
  }
  return refs;
}

export async function pruneVmCache(ctx: AgentContext): Promise<void> {
  const u = ctx.settings.unikernel;
  if (!u || !ctx.runtime.has("unikernel")) return;
  try {
    const keep = new Set<string>();
    for (const ref of unikernelImageRefs(ctx)) {
      const id = await u.imageId(ref).catch(() => null); // not on the node: nothing to keep
      if (id) keep.add(id);
    }
    const { removed } = await u.prune(keep);
    if (removed.length > 0) ctx.logger.info({ removed: removed.length }, "unikernel image cache pruned");
  } catch (err) {
    ctx.logger.warn({ err: (err as Error).message }, "unikernel image cache prune failed");
  }
}
