// Who a caller is, and the one error type auth code throws. Shared by the
// local-token validator, the MCIAS adapter and the gRPC interceptor (§5.2).

export type AccountType = "human" | "system";

export interface Identity {
  name: string;
  /** MCIAS roles: "admin", "user", "guest". */
  roles: string[];
  accountType: AccountType;
  /** ISO time the token stops being valid, when the validator knows it (caps caching). */
  expiresAt?: string;
}

export type AuthErrorCode = "unauthenticated" | "permission_denied";

export class AuthError extends Error {
  override name = "AuthError";
  constructor(
    readonly code: AuthErrorCode,
    message: string,
  ) {
    super(message);
  }
}

export interface TokenValidator {
  /** Resolves the caller, or throws AuthError("unauthenticated") for an invalid or expired token.
   * Any other error (e.g. identity service unreachable) is not an AuthError. */
  validate(token: string): Promise<Identity>;
}

/** The master's identity (its client certificate's CN; SPEC §5.2). */
export const MASTER_NAME = "mcp-master";
/** System accounts `agent-<node>` are nodes' identities: Register/Heartbeat on the master only. */
export const AGENT_PREFIX = "agent-";

/** The node an `agent-<node>` system identity stands for, or null for any other caller. */
export function agentNodeOf(id: { name: string; accountType: string }): string | null {
  if (id.accountType !== "system" || !id.name.startsWith(AGENT_PREFIX)) return null;
  const node = id.name.slice(AGENT_PREFIX.length);
  return node === "" ? null : node;
}

/** Why a system account name may not be listed as an operator, or null when it may. */
export function unlistableOperator(name: string): string | null {
  if (name === MASTER_NAME) return `${MASTER_NAME} is the master's identity, not an operator`;
  if (name.startsWith(AGENT_PREFIX)) return `${name} is a node's identity (agent-<node>), not an operator`;
  return null;
}

/**
 * §5.2 operators: human accounts with "user" or "admin", and the system accounts listed in the
 * daemon's [auth] operators. Returns null when `id` may operate, else the one-line reason. A guest
 * never operates; a node's identity (agent-<node>) and the master never operate, listed or not.
 */
export function operatorDenial(
  id: { name: string; roles: string[]; accountType: string; credential?: string },
  systemOperators: ReadonlySet<string>,
): string | null {
  if (id.roles.includes("guest")) return `${id.name} is a guest account and may not operate`;
  if (id.accountType !== "system") {
    if (id.roles.includes("admin") || id.roles.includes("user")) return null;
    return `${id.name} may not operate (no user or admin role)`;
  }
  if (agentNodeOf(id) !== null) return `${id.name} is a node's identity; nodes may not operate`;
  if (id.name === MASTER_NAME)
    return id.credential === "certificate"
      ? `${MASTER_NAME} may call only the master's RPCs`
      : `${MASTER_NAME} by bearer token is refused: the master authenticates with its client certificate`;
  if (systemOperators.has(id.name)) return null;
  return `system account ${id.name} is not in this daemon's [auth] operators`;
}

/** operatorDenial as a throw: AuthError("permission_denied") with the reason. */
export function requireOperator(
  id: { name: string; roles: string[]; accountType: string; credential?: string },
  systemOperators: ReadonlySet<string> = new Set(),
): void {
  const denied = operatorDenial(id, systemOperators);
  if (denied) throw new AuthError("permission_denied", denied);
}
