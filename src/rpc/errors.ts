// RPC errors: the one place where failures become gRPC status codes (numbers from wire.ts, so
// neither the server nor a handler loads a gRPC library for them).
// Handlers throw RpcError (or helpers below); anything else becomes INTERNAL with its message only.
import { codeName, Code as status } from "./wire.ts";

export class RpcError extends Error {
  constructor(
    readonly code: number,
    message: string,
  ) {
    super(message);
    this.name = "RpcError";
  }
}

export const invalidArgument = (msg: string) => new RpcError(status.INVALID_ARGUMENT, msg);
export const notFound = (msg: string) => new RpcError(status.NOT_FOUND, msg);
export const failedPrecondition = (msg: string) => new RpcError(status.FAILED_PRECONDITION, msg);
export const permissionDenied = (msg: string) => new RpcError(status.PERMISSION_DENIED, msg);
export const unauthenticated = (msg: string) => new RpcError(status.UNAUTHENTICATED, msg);
export const resourceExhausted = (msg: string) => new RpcError(status.RESOURCE_EXHAUSTED, msg);
export const unavailable = (msg: string) => new RpcError(status.UNAVAILABLE, msg);

/** Maps any thrown value to a gRPC status and a one-line message (never a stack). */
export function toStatus(err: unknown): { code: number; details: string } {
  if (err instanceof RpcError) return { code: err.code, details: err.message };
  const e = err as { code?: unknown; message?: unknown; name?: string };
  if (e && e.name === "ConfigError") return { code: status.INVALID_ARGUMENT, details: String(e.message) };
  // The runtime router's refusals (a kind the node lacks, a capability its runtime lacks): the
  // request is valid, this node cannot do it — wherever in a use case the router says so.
  if (e && (e.name === "RuntimeUnavailableError" || e.name === "RuntimeCapabilityError"))
    return { code: status.FAILED_PRECONDITION, details: String(e.message) };
  if (e && e.name === "AuthError") {
    return {
      code: e.code === "permission_denied" ? status.PERMISSION_DENIED : status.UNAUTHENTICATED,
      details: String(e.message),
    };
  }
  const msg = e && typeof e.message === "string" ? e.message : String(err);
  return { code: status.INTERNAL, details: msg.split("\n")[0] ?? "internal error" };
}

/** Human name of a status code, for audit lines and CLI messages. */
export function statusName(code: number): string {
  return codeName(code);
}
