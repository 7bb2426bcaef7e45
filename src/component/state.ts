// The states a component's container is observed in: the runtime maps its own state words onto
// them (runtime/runtime.ts mapState) and the registry stores them. One definition for both.

export type ObservedState = "running" | "stopped" | "exited" | "removed" | "unknown";

export const OBSERVED_STATES: readonly ObservedState[] = [
  "running",
  "stopped",
  "exited",
  "removed",
  "unknown",
];

export function isObservedState(s: string): s is ObservedState {
  return (OBSERVED_STATES as readonly string[]).includes(s);
}
