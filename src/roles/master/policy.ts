// Per-RPC authorization of the master's API (architecture-v2 "Security Model"): who may call
// what is decided by caller identity, not by authentication alone.
//   CLI RPCs (Deploy, Status, ...)  → operators (SPEC §5.2: humans with user/admin, system accounts
//                                      in [auth] operators); agent accounts and the master never.
//   Agent RPCs (Register, Heartbeat) → only `agent-<node>` system accounts on the allowlist.
// The node-name binding (agent-rift may only register "rift") needs the request, so it is
// checked by the handlers (registration.ts); this policy sees only method + identity.
import {
  AGENT_PREFIX,
  agentNodeOf,
  type Identity,
  MASTER_NAME,
  operatorDenial,
} from "../../auth/identity.ts";
import type { Policy } from "../../rpc/interceptor.ts";

/** The master's own identity when it calls agents (and itself, for self-management). */
export const MASTER_IDENTITY = MASTER_NAME;
export { AGENT_PREFIX, agentNodeOf };

/** RPCs agents call; everything else on McpMasterService is a CLI RPC. */
export const AGENT_RPCS: ReadonlySet<string> = new Set(["Register", "Heartbeat"]);
export const CLI_RPCS: ReadonlySet<string> = new Set([
  "Deploy",
  "Undeploy",
  "Status",
  "Sync",
  "Migrate",
  "ListNodes",
  "CreateSnapshot",
  "ListSnapshots",
]);

export interface MasterPolicyConfig {
  registration: { allowed_agents: string[] };
  /** System accounts that may operate ([auth] operators). */
  operators?: readonly string[];
}

/** "/mcp.v1.McpMasterService/Register" → "Register" (a bare name passes through). */
export function methodName(method: string): string {
  const i = method.lastIndexOf("/");
  return i < 0 ? method : method.slice(i + 1);
}

function isGuest(id: Pick<Identity, "roles">): boolean {
  return id.roles.includes("guest");
}

export function masterPolicy(cfg: MasterPolicyConfig): Policy {
  const allowed = new Set(cfg.registration.allowed_agents);
  const operators = new Set(cfg.operators ?? []);
  return (method, raw) => {
    const id = raw as Identity;
    const name = methodName(method);
    if (AGENT_RPCS.has(name)) {
      if (id.accountType !== "system") {
        return `${id.name} is a human account; only agent-<node> service accounts may call ${name}`;
      }
      if (id.name === MASTER_IDENTITY) return `${MASTER_IDENTITY} may not call ${name} (an agent RPC)`;
      if (agentNodeOf(id) === null) {
        return `${id.name} is not an agent identity (agent-<node>); only agents may call ${name}`;
      }
      if (isGuest(id)) return `${id.name} is a guest account and may not call ${name}`;
      if (!allowed.has(id.name)) {
        return `${id.name} is not in [registration] allowed_agents of this master`;
      }
      return null;
    }
    // CLI RPCs (and any method added later): operators only — never a node (a compromised node
    // must not deploy onto the fleet) and never the master's own identity.
    return operatorDenial(id, operators);
  };
}
