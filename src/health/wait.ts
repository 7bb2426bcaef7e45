// Repeats a health check until it passes, the deadline passes or the signal aborts. Every wait
// is bounded by timeoutMs; the check gets the time left as its budget so the last attempt never
// overruns the deadline by more than one check's own cap.
import type { HealthCheck, HealthResult } from "./result.ts";

export interface WaitOptions {
  timeoutMs: number;
  /** Pause between failed attempts (default 250 ms). */
  intervalMs?: number;
  signal?: AbortSignal;
}

export interface WaitResult extends HealthResult {
  attempts: number;
  /** true when the signal ended the wait. */
  aborted: boolean;
}

/** Sleeps `ms`, returning early (false) when the signal aborts. */
export function sleepAbortable(ms: number, signal?: AbortSignal): Promise<boolean> {
  if (signal?.aborted) return Promise.resolve(false);
  return new Promise((resolve) => {
    const onAbort = () => {
      clearTimeout(timer);
      resolve(false);
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve(true);
    }, ms);
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}

export async function waitHealthy(check: HealthCheck, opts: WaitOptions): Promise<WaitResult> {
  const t0 = performance.now();
  const deadline = t0 + opts.timeoutMs;
  const interval = opts.intervalMs ?? 250;
  const elapsed = () => Math.round(performance.now() - t0);
  let attempts = 0;
  let last: HealthResult = { healthy: false, detail: "not checked", ms: 0 };
  for (;;) {
    if (opts.signal?.aborted) return { ...last, ms: elapsed(), attempts, aborted: true };
    attempts++;
    last = await check(Math.max(1, Math.round(deadline - performance.now())));
    if (last.healthy) return { ...last, ms: elapsed(), attempts, aborted: false };
    const left = deadline - performance.now();
    if (left <= 0) break;
    if (!(await sleepAbortable(Math.min(interval, left), opts.signal))) {
      return { ...last, ms: elapsed(), attempts, aborted: true };
    }
  }
  return {
    ...last,
    detail: `${last.detail} (unhealthy after ${attempts} attempts in ${elapsed()} ms)`,
    ms: elapsed(),
    attempts,
    aborted: false,
  };
}
