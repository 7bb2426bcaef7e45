// The auth + audit interceptor: every RPC of every service passes through here exactly once.
// It extracts the bearer token, validates it (the validator caches by SHA-256), applies the
// per-RPC authorization policy, runs the handler, and writes one audit line per call
// (method, caller, peer, duration, status) — never the token.

import type { Logger } from "pino";
import { RpcError, statusName, toStatus } from "./errors.ts";
import type { CallContext } from "./service.ts";
import { Code as status } from "./wire.ts";

/** Request metadata: the server's view of HTTP/2 headers (a gRPC library's Metadata fits too). */
export interface Metadata {
  get(key: string): unknown[];
}

export interface Identity {
  name: string;
  roles: string[];
  accountType: string;
}

export interface Validator {
  validate(token: string): Promise<Identity>;
}

/** Returns null when allowed, or the reason the caller may not call this method. */
export type Policy = (method: string, identity: Identity) => string | null;

export interface InterceptorOptions {
  validator: Validator;
  policy: Policy;
  logger: Logger;
}

export function bearerToken(md: Metadata): string | null {
  const v = md.get("authorization")[0];
  if (typeof v !== "string") return null;
  const m = /^Bearer\s+(\S+)$/i.exec(v.trim());
  return m ? m[1]! : null;
}

/** Resolves the caller from the bearer token; throws RpcError(UNAUTHENTICATED|UNAVAILABLE). */
export async function identify(opts: InterceptorOptions, md: Metadata): Promise<Identity> {
  const token = bearerToken(md);
  if (!token) throw new RpcError(status.UNAUTHENTICATED, "missing bearer token");
  try {
    return await opts.validator.validate(token);
  } catch (err) {
    const s = toStatus(err);
    if (s.code === status.PERMISSION_DENIED) throw new RpcError(s.code, s.details);
    if (s.code === status.UNAUTHENTICATED) throw new RpcError(s.code, s.details);
    // The identity service itself failed: the caller is not authenticated, say why.
    throw new RpcError(status.UNAVAILABLE, `token validation failed: ${s.details}`);
  }
}

/** Applies the policy to a known caller; throws RpcError(PERMISSION_DENIED). */
export function authorize(opts: InterceptorOptions, method: string, identity: Identity): void {
  const denied = opts.policy(method, identity);
  if (denied) throw new RpcError(status.PERMISSION_DENIED, denied);
}

/** Authenticates and authorizes a call; throws RpcError(UNAUTHENTICATED|PERMISSION_DENIED). */
export async function authenticate(
  opts: InterceptorOptions,
  method: string,
  md: Metadata,
): Promise<Identity> {
  const identity = await identify(opts, md);
  authorize(opts, method, identity);
  return identity;
}

export interface AuditRecord {
  method: string;
  caller: string;
  peer: string;
  started: number;
  code: number;
  error?: string;
}

export function audit(logger: Logger, rec: AuditRecord): void {
  const fields = {
    audit: true,
    method: rec.method,
    caller: rec.caller,
    peer: rec.peer,
    duration_ms: Math.round((performance.now() - rec.started) * 100) / 100,
    status: statusName(rec.code),
    ...(rec.error ? { error: rec.error } : {}),
  };
  if (rec.code === status.OK) logger.info(fields, "rpc");
  else logger.warn(fields, "rpc");
}

export type { CallContext };
