// gRPC wire facts shared by both RPC clients without loading grpc-js: status code names, the
// message size limit, and CallError (what every client call rejects with). The one-shot CLI
// client (client-h2.ts) must not pay grpc-js's load time, so these live apart from client.ts.

/** Largest message either side sends or accepts (server.ts and both clients). */
export const MAX_MESSAGE_BYTES = 16 * 1024 * 1024;

/** gRPC status codes (the same numbers as grpc-js's `status`). */
export const Code = {
  OK: 0,
  CANCELLED: 1,
  UNKNOWN: 2,
  INVALID_ARGUMENT: 3,
  DEADLINE_EXCEEDED: 4,
  NOT_FOUND: 5,
  ALREADY_EXISTS: 6,
  PERMISSION_DENIED: 7,
  RESOURCE_EXHAUSTED: 8,
  FAILED_PRECONDITION: 9,
  ABORTED: 10,
  OUT_OF_RANGE: 11,
  UNIMPLEMENTED: 12,
  INTERNAL: 13,
  UNAVAILABLE: 14,
  DATA_LOSS: 15,
  UNAUTHENTICATED: 16,
} as const;

const NAMES: Record<number, string> = Object.fromEntries(Object.entries(Code).map(([k, v]) => [v, k]));

/** Human name of a status code ("UNAVAILABLE"), or the number for an unknown one. */
export function codeName(code: number): string {
  return NAMES[code] ?? String(code);
}

/** A failed call: carries the gRPC code; message is one line ("UNAVAILABLE: ..."). */
export class CallError extends Error {
  constructor(
    readonly code: number,
    readonly details: string,
  ) {
    super(`${codeName(code)}: ${details}`);
    this.name = "CallError";
  }
}
