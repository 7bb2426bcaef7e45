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

/**
 * §5.2 authorization: any authenticated non-guest user or system account may
 * operate (admin is not required); a guest is denied. A human needs "user"
 * or "admin"; a system account is allowed unless it is marked guest.
 */
export function requireOperator(id: Identity): void {
  const operator = id.roles.includes("admin") || id.roles.includes("user");
  const guest = id.roles.includes("guest");
  if (operator || (id.accountType === "system" && !guest)) return;
  throw new AuthError("permission_denied", `${id.name} may not operate (role guest or no operator role)`);
}
