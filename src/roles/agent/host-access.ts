// The agent's host-level access check (issue 16 finding 7; rules in auth/host-access.ts) for a
// definition that arrives over RPC (Deploy, SyncDesiredState), before anything is recorded or
// created. The agent adds what only it can see: a bind mount under <srv_root>/<service>/ whose
// path leads out of it through a symlink (one a container sharing the directory could plant).
// Boot sequence definitions come from the agent's own config (root/mcp-owned) and are not checked.
import { lstatSync, realpathSync } from "node:fs";
import { basename, dirname, join } from "node:path";
import {
  hostLevelFields,
  hostPathConfined,
  mayUseHostAccess,
  requireHostAccess,
  serviceDir,
} from "../../auth/host-access.ts";
import { AuthError, MASTER_NAME } from "../../auth/identity.ts";
import type { ServiceDef } from "../../config/service.ts";
import { parseVolumeSpec } from "../../config/specs.ts";
import type { AgentContext } from "./context.ts";

type Caller = { name: string; roles: string[]; accountType: string; credential?: string };

/**
 * The master (the identity the agent's policy already gives the master-only RPCs): it checked
 * its own caller against the same rules before forwarding (roles/master/deploy.ts), so its
 * requests skip the role check here — the operator's role does not reach the agent. The symlink
 * check still runs for it, strictly (see below).
 */
/** The master proves itself with its client certificate only (SPEC §5.2): a token named mcp-master is not it. */
function isMaster(id: Caller): boolean {
  return id.name === MASTER_NAME && id.credential === "certificate";
}

/** Real path of `p`, following the symlinks of its existing part; null at a dangling symlink. */
export function resolveExisting(p: string): string | null {
  try {
    return realpathSync(p);
  } catch {
    let link = false;
    try {
      link = lstatSync(p).isSymbolicLink();
    } catch {
      // absent: resolve the parent
    }
    if (link) return null;
    const parent = dirname(p);
    if (parent === p) return p;
    const r = resolveExisting(parent);
    return r === null ? null : join(r, basename(p));
  }
}

/**
 * Bind mounts written under <srv_root>/<service>/ that really lead elsewhere (a symlink on the
 * way, or a dangling one): `component <name>: volume "<spec>" (...)`, like hostLevelFields.
 */
export function symlinkEscapes(def: ServiceDef, srvRoot: string): string[] {
  const out: string[] = [];
  const dir = serviceDir(srvRoot, def.name);
  const base = resolveExisting(dir);
  for (const c of def.components) {
    for (const v of c.volumes) {
      const spec = parseVolumeSpec(v);
      if (spec.kind !== "bind" || !hostPathConfined(spec.source, srvRoot, def.name)) continue;
      const real = resolveExisting(spec.source);
      if (base !== null && real !== null && (real === base || real.startsWith(`${base}/`))) continue;
      out.push(
        `component ${c.name}: volume ${JSON.stringify(v)} (host path leads out of ${dir}/ through a symlink${
          real === null ? "" : ` to ${real}`
        }; name the real path)`,
      );
    }
  }
  return out;
}

/**
 * Refuses (PERMISSION_DENIED) to create or start a container whose bind mount under
 * <srv_root>/<service>/ leads out through a symlink — for every caller, every time: the deploy
 * checked the paths as they were then, and anything sharing the service directory can swap a
 * checked directory for a symlink before a later start, restart, recover or rollback.
 */
export function requireMountsConfined(
  ctx: Pick<AgentContext, "settings">,
  service: string,
  comps: readonly ServiceDef["components"][number][],
): void {
  const escapes = symlinkEscapes(
    { name: service, components: [...comps] } as ServiceDef,
    ctx.settings.srvRoot,
  );
  if (escapes.length > 0)
    throw new AuthError(
      "permission_denied",
      `service ${service}: ${escapes.join("; ")}: refused, a symlink in the service directory may not widen a mount`,
    );
}

/**
 * Refuses (PERMISSION_DENIED, one line naming the fields) a definition with host-level fields
 * from a caller who may not deploy them: admins may, and every operator with
 * [auth] host_access = "operators".
 */
export function requireHostAccessFor(ctx: AgentContext, def: ServiceDef, id: Caller): void {
  const srvRoot = ctx.settings.srvRoot;
  const escapes = symlinkEscapes(def, srvRoot);
  if (isMaster(id)) {
    // The operator behind the master is unknown here: a path that only a symlink makes
    // host-level is refused for every caller through the master.
    if (escapes.length > 0)
      throw new AuthError(
        "permission_denied",
        `service ${def.name}: ${escapes.join("; ")}: refused for a deploy through the master`,
      );
    return;
  }
  const allowance = ctx.settings.hostAccess ?? "admin";
  if (mayUseHostAccess(id, allowance)) return;
  requireHostAccess(id, def.name, [...hostLevelFields(def, srvRoot), ...escapes], allowance);
}
