// The deploy health gate: after a component's new container starts, wait until its declared
// check passes — or decide it never will. Pure timing logic over an injected clock, check and
// container watch (unit-tested with a fake clock); deploy.ts wires the real ones in.
//
// Rules (Docker/Compose-like): checks start at once and repeat every `interval`, each capped at
// `timeout`; the first healthy check passes the gate. A failed check counts only once
// `start_period` has passed since the container started; `retries` consecutive counted failures
// fail the gate. The container exiting (or being restarted by its restart policy) fails it at the
// next look, which happens before every check and right after a failed one. Whatever happens,
// the gate ends by start_period + retries × (interval + timeout) + GATE_SLACK_MS.
import type { HealthDef } from "../../config/service.ts";
import type { HealthCheck } from "../../health/result.ts";

export interface GateClock {
  /** Monotonic milliseconds. */
  now(): number;
  sleep(ms: number): Promise<void>;
}

export const realClock: GateClock = {
  now: () => performance.now(),
  sleep: (ms) => Bun.sleep(Math.max(0, ms)),
};

/** Why the container is no longer the one started (exited, removed, restarted), or null while it runs. */
export type ContainerWatch = () => Promise<string | null>;

export type GateCause = "healthy" | "retries" | "exited" | "deadline";

export interface GateOutcome {
  healthy: boolean;
  cause: GateCause;
  /** Checks run. */
  checks: number;
  /** Time spent in the gate. */
  ms: number;
  /** One line: "healthy after 3 checks (http GET … answered 200)" or why it failed. */
  detail: string;
}

/** Headroom over the nominal worst case, for the container looks between checks. */
export const GATE_SLACK_MS = 2000;

/** The longest a gate may take for this declaration. */
export function gateDeadlineMs(h: HealthDef): number {
  return h.startPeriodMs + h.retries * (h.intervalMs + h.timeoutMs) + GATE_SLACK_MS;
}

const plural = (n: number, word: string) => `${n} ${word}${n === 1 ? "" : "s"}`;

export async function runHealthGate(
  h: HealthDef,
  check: HealthCheck,
  watch: ContainerWatch,
  clock: GateClock = realClock,
): Promise<GateOutcome> {
  const t0 = clock.now();
  const deadline = t0 + gateDeadlineMs(h);
  let checks = 0;
  let failures = 0;
  let last = "not checked yet";
  const end = (healthy: boolean, cause: GateCause, detail: string): GateOutcome => ({
    healthy,
    cause,
    checks,
    ms: Math.round(clock.now() - t0),
    detail,
  });
  const exited = (why: string) =>
    end(false, "exited", `${why} after ${plural(checks, "check")}${checks > 0 ? ` (last: ${last})` : ""}`);
  const late = () =>
    end(
      false,
      "deadline",
      `not healthy within ${gateDeadlineMs(h)} ms after ${plural(checks, "check")} (last: ${last})`,
    );

  for (;;) {
    const gone = await watch();
    if (gone) return exited(gone);
    const started = clock.now();
    const budget = Math.min(h.timeoutMs, deadline - started);
    if (budget <= 0) return late();
    checks++;
    const r = await check(Math.max(1, Math.round(budget)));
    if (r.healthy) return end(true, "healthy", `healthy after ${plural(checks, "check")} (${r.detail})`);
    last = r.detail;
    const goneNow = await watch();
    if (goneNow) return exited(goneNow);
    if (started - t0 >= h.startPeriodMs) {
      failures++;
      if (failures >= h.retries) {
        return end(false, "retries", `unhealthy: ${last} (${plural(failures, "consecutive failure")})`);
      }
    }
    const left = deadline - clock.now();
    if (left <= 0) return late();
    await clock.sleep(Math.min(h.intervalMs, left));
  }
}
