// The one shape every health check answers with, so boot, deploy health gates and the monitor can
// treat tcp/http/grpc (and "the container runs") alike. Checks never throw: a failure is a result.

export interface HealthResult {
  healthy: boolean;
  /** One line: what was checked and what was seen ("tcp 127.0.0.1:8080 accepted", "refused"...). */
  detail: string;
  /** How long the check took. */
  ms: number;
}

/** A check to repeat; `budgetMs` is the time left to the caller's deadline (cap your own timeout to it). */
export type HealthCheck = (budgetMs: number) => Promise<HealthResult>;

/** Formats host:port, bracketing IPv6 literals. */
export function hostPort(host: string, port: number): string {
  return host.includes(":") ? `[${host}]:${port}` : `${host}:${port}`;
}

export function firstLine(err: unknown): string {
  const msg = err instanceof Error ? err.message : String(err);
  return msg.split("\n")[0] ?? msg;
}
