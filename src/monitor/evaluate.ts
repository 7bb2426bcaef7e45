// Alert evaluation (reference "Alert Conditions"), pure: given one tick's observed-state
// transitions, the desired states, the flap-window transition counts and the per-component
// cooldown state, decide which alerts fire. No clock, no I/O: the loop (monitor.ts) feeds it.
import type { DesiredState, ObservedState } from "../registry/types.ts";
import { isDrift, isObservedState } from "../registry/types.ts";
import type { Alert } from "./alert.ts";

export interface Transition {
  service: string;
  component: string;
  prev: string;
  next: string;
}

export interface EvaluateInput {
  /** ms since the epoch of this tick. */
  now: number;
  transitions: readonly Transition[];
  /** Desired state per componentKey(); a component missing here (deleted meanwhile) never alerts. */
  desired: ReadonlyMap<string, DesiredState>;
  /** Transitions within the flap window per componentKey(), this tick's included. */
  flapCounts: ReadonlyMap<string, number>;
  /** When the last alert fired per componentKey() (ms since the epoch). */
  lastAlert: ReadonlyMap<string, number>;
  cooldownMs: number;
  flapThreshold: number;
}

export interface Evaluation {
  alerts: Alert[];
  /** Alerts that would have fired but fell inside their component's cooldown. */
  suppressed: Alert[];
}

export function componentKey(service: string, component: string): string {
  return `${service}/${component}`;
}

/**
 * Whether a state counts as drifting. "unknown" (never queried yet) does not: a component that
 * goes from unknown straight to exited has just entered drift and must alert.
 */
function drifting(desired: DesiredState, state: string): boolean {
  return isObservedState(state) && state !== "unknown" && isDrift(desired, state as ObservedState);
}

/**
 * Drift fires on the transition INTO drift (not while a component stays drifted); flapping fires
 * on a transition that brings the window's count to flapThreshold or more, and wins over drift
 * in the same tick since it says more. `ignore` never alerts. At most one alert per component
 * per cooldown, counting the alerts of this very call.
 */
export function evaluate(input: EvaluateInput): Evaluation {
  const alerts: Alert[] = [];
  const suppressed: Alert[] = [];
  const fired = new Map(input.lastAlert);
  for (const t of input.transitions) {
    const key = componentKey(t.service, t.component);
    const desired = input.desired.get(key);
    if (desired === undefined || desired === "ignore") continue;
    const count = input.flapCounts.get(key) ?? 0;
    let type: Alert["type"] | null = null;
    if (count >= input.flapThreshold) type = "flapping";
    else if (drifting(desired, t.next) && !drifting(desired, t.prev)) type = "drift";
    if (type === null) continue;
    const alert: Alert = {
      type,
      service: t.service,
      component: t.component,
      desired,
      observed: t.next,
      prev: t.prev,
      transitions: count,
    };
    const last = fired.get(key);
    if (last !== undefined && input.now - last < input.cooldownMs) {
      suppressed.push(alert);
      continue;
    }
    fired.set(key, input.now);
    alerts.push(alert);
  }
  return { alerts, suppressed };
}

/** The cooldown state after `alerts` fired at `now`, without entries whose cooldown has ended. */
export function recordAlerts(
  lastAlert: ReadonlyMap<string, number>,
  alerts: readonly Pick<Alert, "service" | "component">[],
  now: number,
  cooldownMs: number,
): Map<string, number> {
  const next = new Map<string, number>();
  for (const [k, t] of lastAlert) if (now - t < cooldownMs) next.set(k, t);
  for (const a of alerts) next.set(componentKey(a.service, a.component), now);
  return next;
}
