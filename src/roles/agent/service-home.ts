// A service's home is <srv_root>/<service>. Names whose home would hold this agent's own state —
// its registry, config, TLS key, tokens, backups — are refused wherever a service name comes in
// (push, pull, export/snapshot, import, deploy, sync, adopt), beside the fixed reserved names
// ("mcp", "mcp-master": config/names.ts). With srv_root = "/srv" and the agent's home /srv/mcp
// the fixed list covers a provisioned node; this covers any other layout (issue 16 finding 3).
import { isAbsolute, relative, resolve } from "node:path";
import { invalidArgument } from "../../rpc/errors.ts";
import type { AgentSettings } from "./context.ts";
import { checkServiceName } from "./files/confine.ts";
import { resolveExisting } from "./host-access.ts";

/** The path with its existing part's symlinks resolved (as written at a dangling symlink). */
function real(p: string): string {
  const abs = resolve(p);
  return resolveExisting(abs) ?? abs;
}

/** Whether `inner` is `outer` or lies below it. */
function within(outer: string, inner: string): boolean {
  const rel = relative(outer, inner);
  return rel === "" || (!rel.startsWith("..") && !isAbsolute(rel));
}

/** The first of the agent's own state paths inside <srv_root>/<service>, or null. */
export function daemonStateIn(
  settings: Pick<AgentSettings, "srvRoot" | "dbPath" | "statePaths">,
  service: string,
): string | null {
  const home = real(resolve(settings.srvRoot, service));
  for (const p of [settings.dbPath, ...(settings.statePaths ?? [])]) {
    if (!p || p === ":memory:") continue;
    if (within(home, real(p))) return p;
  }
  return null;
}

/** checkServiceName, then refuses a name whose home holds the agent's state (INVALID_ARGUMENT). */
export function checkServiceHome(
  settings: Pick<AgentSettings, "srvRoot" | "dbPath" | "statePaths">,
  service: string,
): void {
  checkServiceName(service);
  const held = daemonStateIn(settings, service);
  if (held)
    throw invalidArgument(
      `service name "${service}" is refused: ${resolve(settings.srvRoot, service)} holds this agent's own state (${held})`,
    );
}
